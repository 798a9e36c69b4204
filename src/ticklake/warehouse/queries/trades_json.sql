-- The same trades as trades.sql, each written by ClickHouse as the API's JSON object: the id as text
-- (ids reach 2^64), times in RFC 3339 to the microsecond, decimals as their exact shortest text. The
-- API sends these rows as they are: building 5,000 of them in Python cost ~50 ms of the interpreter
-- per request, time the feeds and the writer then waited for. (The page is chosen in the inner query,
-- where the names are still the columns': the outer one reuses them for the text.)
SELECT toString(id) AS trade_id,
       formatDateTime(at, '%Y-%m-%dT%H:%i:%S.%fZ') AS time,
       toString(p) AS price,
       toString(q) AS qty,
       toString(s) AS side,
       formatDateTime(received, '%Y-%m-%dT%H:%i:%S.%fZ') AS received_at
FROM
(
    SELECT trade_id AS id, ts AS at, price AS p, qty AS q, side AS s, received_at AS received
    FROM silver_trades
    WHERE exchange = {exchange:String}
      AND symbol = {symbol:String}
      AND ts >= {start:DateTime64(6, 'UTC')}
      AND ts < {end:DateTime64(6, 'UTC')}
      AND (ts, trade_id) > ({after_ts:DateTime64(6, 'UTC')}, {after_id:UInt64})
    ORDER BY ts, trade_id
    LIMIT {limit:UInt32}
)
ORDER BY at, id;
