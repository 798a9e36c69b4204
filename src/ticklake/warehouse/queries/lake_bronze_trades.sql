-- Bronze trades stored in the seconds (lower, upper], for the cold tier, in the cold table's sort
-- order (tables.py sort_keys).
SELECT exchange, native_symbol, symbol, trade_id, price, qty, toString(side) AS side, ts, received_at,
       conn_id, frame_seq, bus_topic, bus_partition, bus_offset, stored_at
FROM bronze_trades
WHERE stored_at > toDateTime({lower:UInt32}, 'UTC') AND stored_at <= toDateTime({upper:UInt32}, 'UTC')
ORDER BY native_symbol, trade_id;
