-- Dead letters stored in the seconds (lower, upper], for the cold tier, in the cold table's sort order
-- (tables.py sort_keys).
SELECT exchange, native_symbol, symbol, trade_id, price, qty, toString(side) AS side, ts, received_at, rule,
       detail, conn_id, frame_seq, raw_frame, stored_at
FROM dead_letters
WHERE stored_at > toDateTime({lower:UInt32}, 'UTC') AND stored_at <= toDateTime({upper:UInt32}, 'UTC')
ORDER BY exchange, native_symbol, trade_id;
