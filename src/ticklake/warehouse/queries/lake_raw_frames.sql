-- Raw frames stored in the seconds (lower, upper], for the cold tier, in the cold table's sort order
-- (tables.py sort_keys).
SELECT exchange, conn_id, frame_seq, received_at, payload, error, trade_count, source, native_symbol,
       bus_topic, bus_partition, bus_offset, stored_at
FROM raw_frames
WHERE stored_at > toDateTime({lower:UInt32}, 'UTC') AND stored_at <= toDateTime({upper:UInt32}, 'UTC')
ORDER BY received_at, conn_id, frame_seq;
