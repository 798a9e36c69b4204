-- One chunk of a file export of trades (api/export.py): the rows of trades.sql with their columns typed
-- as the file keeps them (decimals exact at the warehouse's scale, times to the microsecond), in the
-- API's column order. The export reads chunk after chunk, each after the previous one's last row, so
-- that each query stays small and under the per-query limits however long the range.
SELECT trade_id, ts AS time, price, qty, toString(side) AS side, received_at
FROM silver_trades
WHERE exchange = {exchange:String}
  AND symbol = {symbol:String}
  AND ts >= {start:DateTime64(6, 'UTC')}
  AND ts < {end:DateTime64(6, 'UTC')}
  AND (ts, trade_id) > ({after_ts:DateTime64(6, 'UTC')}, {after_id:UInt64})
ORDER BY ts, trade_id
LIMIT {limit:UInt32}
-- Reading in order, ClickHouse by default buffers blocks of every part ahead of the merge: a chunk of
-- 200,000 rows read ~65,000 rows of each of the market's parts (11 over 10M trades), 127 ms instead
-- of 40 (measured), and held them in memory. Arrow output is lz4-compressed by default: compressing
-- in ClickHouse and decompressing in Python, in one process, only cost time (2-4 ms of ~15 per chunk).
SETTINGS read_in_order_use_buffering = 0, output_format_arrow_compression_method = 'none';
