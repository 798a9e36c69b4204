-- Trades per candle window in gold for one market on the given days (see market_silver_window_counts).
SELECT exchange, symbol, timeframe, bucket, countMerge(trades) AS trades
FROM gold_ohlcv
WHERE exchange = {exchange:String} AND symbol = {symbol:String} AND has({days:Array(Date)}, toDate(bucket))
GROUP BY exchange, symbol, timeframe, bucket;
