-- Candles of one timeframe in [start, end) of the markets a filtered re-derivation leaves alone
-- (exchange and symbol not both matching): the offloader rewrites whole buckets from these.
SELECT DISTINCT exchange, symbol, toUInt32(toUnixTimestamp(bucket)) AS bucket_second
FROM gold_ohlcv
WHERE timeframe = {timeframe:UInt32}
  AND bucket >= {start:DateTime64(6, 'UTC')} AND bucket < {end:DateTime64(6, 'UTC')}
  AND NOT (({exchange:String} = '' OR exchange = {exchange:String}) AND ({symbol:String} = '' OR symbol = {symbol:String}));
