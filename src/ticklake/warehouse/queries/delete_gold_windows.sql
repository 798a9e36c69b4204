DELETE FROM gold_ohlcv
WHERE exchange = {exchange:String} AND symbol = {symbol:String} AND timeframe = {timeframe:UInt32}
  AND has({buckets:Array(DateTime('UTC'))}, bucket);
