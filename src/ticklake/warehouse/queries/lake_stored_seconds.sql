-- Where to cut a backlog into commits of about {max_rows} rows: the last stored_at second in
-- (lower, upper] whose running row count stays within max_rows, or the first second when that one
-- alone is bigger (a second is never split: the watermark is a second). 0 when the range is empty.
SELECT if(countIf(running <= {max_rows:UInt64}) > 0, maxIf(second, running <= {max_rows:UInt64}), min(second)) AS cut
FROM
(
    SELECT second, sum(rows) OVER (ORDER BY second ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running
    FROM
    (
        SELECT toUInt32(toUnixTimestamp(stored_at)) AS second, count() AS rows
        FROM {table:Identifier}
        WHERE stored_at > toDateTime({lower:UInt32}, 'UTC') AND stored_at <= toDateTime({upper:UInt32}, 'UTC')
        GROUP BY second
    )
);
