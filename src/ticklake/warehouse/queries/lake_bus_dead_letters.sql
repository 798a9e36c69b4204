-- Bus messages the ingester could not decode, stored in the seconds (lower, upper], for the cold tier,
-- in the cold table's sort order (tables.py sort_keys).
SELECT topic, partition, offset, key, headers, value, toString(reason) AS reason, detail, stored_at
FROM bus_dead_letters
WHERE stored_at > toDateTime({lower:UInt32}, 'UTC') AND stored_at <= toDateTime({upper:UInt32}, 'UTC')
ORDER BY topic, `partition`, `offset`;
