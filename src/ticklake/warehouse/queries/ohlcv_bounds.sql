-- The first and last candle of one market and timeframe in [start, end) (rows = 0: none), read from
-- the primary key: where /v1/ohlcv anchors the bounded window it aggregates.
SELECT min(bucket) AS first, max(bucket) AS last, count() AS rows
FROM gold_ohlcv
WHERE exchange = {exchange:String}
  AND symbol = {symbol:String}
  AND timeframe = {timeframe:UInt32}
  AND bucket >= {start:DateTime('UTC')}
  AND bucket < {end:DateTime('UTC')};
