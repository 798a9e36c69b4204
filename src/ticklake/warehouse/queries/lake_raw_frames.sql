-- Raw frames stored in the seconds (lower, upper], for the cold tier.
SELECT exchange, conn_id, frame_seq, received_at, payload, error, trade_count, source, native_symbol,
       bus_topic, bus_partition, bus_offset, stored_at
FROM raw_frames
WHERE stored_at > toDateTime({lower:UInt32}, 'UTC') AND stored_at <= toDateTime({upper:UInt32}, 'UTC');
