-- Markets with stored candles: first and last day with trades, and the trade count, from 1d gold.
SELECT exchange, symbol, min(bucket) AS first_day, max(bucket) AS last_day, sum(n) AS trades
FROM (
    SELECT exchange, symbol, bucket, countMerge(trades) AS n
    FROM gold_ohlcv
    WHERE timeframe = 86400
    GROUP BY exchange, symbol, bucket
)
GROUP BY exchange, symbol
ORDER BY exchange, symbol;
