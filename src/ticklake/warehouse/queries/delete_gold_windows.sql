-- The gold windows (timeframe, bucket) of one market about to be recomputed from silver: one
-- lightweight delete (a mutation) for all of them, since each mutation costs a pass over gold's parts.
DELETE FROM gold_ohlcv
WHERE exchange = {exchange:String} AND symbol = {symbol:String}
  AND has({windows:Array(Tuple(UInt32, DateTime('UTC')))}, (timeframe, bucket));
