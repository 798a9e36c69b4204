-- Trades per candle window in gold, for the same days as silver_window_counts.
SELECT exchange, symbol, timeframe, bucket, countMerge(trades) AS trades
FROM gold_ohlcv
WHERE (exchange, symbol, toDate(bucket)) IN (
    SELECT DISTINCT exchange, symbol, toDate(ts) FROM silver_trades WHERE received_at >= {since:DateTime64(6, 'UTC')}
)
GROUP BY exchange, symbol, timeframe, bucket;
