-- Trades per market and UTC day as gold counted them (the 1d candles), days in [start, end),
-- optional filters.
SELECT exchange, symbol, toDate(bucket) AS day, countMerge(trades) AS trades
FROM gold_ohlcv
WHERE timeframe = 86400
  AND bucket >= {start:DateTime64(6, 'UTC')} AND bucket < {end:DateTime64(6, 'UTC')}
  AND ({exchange:String} = '' OR exchange = {exchange:String})
  AND ({symbol:String} = '' OR symbol = {symbol:String})
GROUP BY exchange, symbol, day;
