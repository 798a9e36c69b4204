-- Holes in the trade ids each market's users see: the venues number a market's trades 1, 2, 3 ...
-- without a gap, so ids missing between two trades in silver or dead letters (a trade that failed
-- validation is no hole) never reached them. Looks at the trades whose exchange time lies in
-- [since, until); a hole across `since` is not seen. For each hole: its ids and the exchange times of
-- the trades around it. Bronze may hold a hole's trades (a batch cut short): the writer then
-- completes them when they are fetched again.
SELECT exchange, native_symbol, previous_id + 1 AS first, trade_id - 1 AS last, previous_ts_us, ts_us
FROM (
    SELECT exchange, native_symbol, trade_id, ts_us,
           row_number() OVER w AS n,
           lagInFrame(trade_id) OVER w AS previous_id,
           lagInFrame(ts_us) OVER w AS previous_ts_us
    FROM (
        SELECT CAST(exchange AS String) AS exchange, CAST(native_symbol AS String) AS native_symbol, trade_id,
               toUnixTimestamp64Micro(ts) AS ts_us
        FROM silver_trades
        WHERE exchange IN {exchanges:Array(String)}
          AND ts >= {since:DateTime64(6, 'UTC')} AND ts < {until:DateTime64(6, 'UTC')}
        UNION ALL
        SELECT CAST(exchange AS String) AS exchange, native_symbol, trade_id, toUnixTimestamp64Micro(ts) AS ts_us
        FROM dead_letters
        WHERE exchange IN {exchanges:Array(String)}
          AND ts >= {since:DateTime64(6, 'UTC')} AND ts < {until:DateTime64(6, 'UTC')}
    )
    WINDOW w AS (PARTITION BY exchange, native_symbol ORDER BY trade_id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
WHERE n > 1 AND trade_id > previous_id + 1
ORDER BY exchange, native_symbol, first;
