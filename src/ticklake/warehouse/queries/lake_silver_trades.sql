-- Silver trades stored in the seconds (lower, upper], for the cold tier, in the cold table's sort
-- order (tables.py sort_keys): ClickHouse sorts on all cores, where a sort in pyarrow copied every
-- column once more. stored_at is not in the sorting key: this scans the stored_at column of silver,
-- which is cheap next to the rows it returns.
SELECT exchange, symbol, native_symbol, trade_id, price, qty, toString(side) AS side, ts, received_at,
       conn_id, frame_seq, stored_at
FROM silver_trades
WHERE stored_at > toDateTime({lower:UInt32}, 'UTC') AND stored_at <= toDateTime({upper:UInt32}, 'UTC')
ORDER BY symbol, ts, trade_id;
