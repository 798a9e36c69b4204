-- Closed candle windows changed after the cold copy was taken (updated_at after the cold table's
-- watermark): the next offload rewrites these buckets, so until then the audit leaves them out.
SELECT DISTINCT toUInt32(toUnixTimestamp(bucket)) AS bucket
FROM gold_ohlcv
WHERE timeframe = {timeframe:UInt32}
  AND bucket < toDateTime({closed_before:UInt32}, 'UTC')
  AND updated_at > toDateTime({changed_after:UInt32}, 'UTC');
