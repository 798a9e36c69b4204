-- Trades per candle window in silver, for every day that recently received trades and every timeframe
-- bound (warehouse/reader.py's TIMEFRAMES).
SELECT exchange, symbol, timeframe,
       toDateTime(intDiv(toUnixTimestamp(ts), timeframe) * timeframe, 'UTC') AS bucket, count() AS trades
FROM silver_trades FINAL
ARRAY JOIN {timeframes:Array(UInt32)} AS timeframe
WHERE (exchange, symbol, toDate(ts)) IN (
    SELECT DISTINCT exchange, symbol, toDate(ts) FROM silver_trades WHERE received_at >= {since:DateTime64(6, 'UTC')}
)
GROUP BY exchange, symbol, timeframe, bucket;
