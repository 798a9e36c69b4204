-- Trades per candle window in silver for one market on the given days, for every timeframe bound
-- (warehouse/reader.py's TIMEFRAMES).
SELECT exchange, symbol, timeframe,
       toDateTime(intDiv(toUnixTimestamp(ts), timeframe) * timeframe, 'UTC') AS bucket, count() AS trades
FROM silver_trades FINAL
ARRAY JOIN {timeframes:Array(UInt32)} AS timeframe
WHERE exchange = {exchange:String} AND symbol = {symbol:String} AND has({days:Array(Date)}, toDate(ts))
GROUP BY exchange, symbol, timeframe, bucket;
