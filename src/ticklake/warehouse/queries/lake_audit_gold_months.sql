-- The months (YYYYMM of the bucket) holding a candle of one timeframe that the cold tier audit
-- compares: a window that closed before {closed_before} and changed after {updated_after} (the
-- candle's updated_at is the max over its rows, so one row after the bound is enough).
SELECT DISTINCT toYYYYMM(bucket) AS month
FROM gold_ohlcv
WHERE timeframe = {timeframe:UInt32}
  AND bucket < toDateTime({closed_before:UInt32}, 'UTC')
  AND updated_at > toDateTime({updated_after:UInt32}, 'UTC')
ORDER BY month;
