-- Where to cut a backlog of closed candle windows into commits of about {max_rows} candles: the end
-- of the last bucket in [closed_from, closed_before) whose running candle count stays within
-- max_rows, or the end of the first bucket when that one alone is bigger. 0 when there is none.
SELECT if(countIf(running <= {max_rows:UInt64}) > 0, maxIf(second, running <= {max_rows:UInt64}), min(second))
       + {timeframe:UInt32} AS cut
FROM
(
    SELECT second, sum(candles) OVER (ORDER BY second ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running
    FROM
    (
        SELECT toUInt32(toUnixTimestamp(bucket)) AS second, uniqExact(exchange, symbol) AS candles
        FROM gold_ohlcv
        WHERE timeframe = {timeframe:UInt32}
          AND bucket >= toDateTime({closed_from:UInt32}, 'UTC') AND bucket < toDateTime({closed_before:UInt32}, 'UTC')
        GROUP BY second
    )
)
HAVING count() > 0;
