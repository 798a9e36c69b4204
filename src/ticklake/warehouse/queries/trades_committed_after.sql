-- Silver trades of one market committed after a position in commit order (committed_us, then exchange
-- time and trade id within a batch): what a live-stream client missed while away, late ones included.
SELECT trade_id, toUnixTimestamp64Micro(ts) AS ts_us, price, qty, toString(side) AS side,
       toUnixTimestamp64Micro(received_at) AS received_us, native_symbol, committed_us
FROM silver_trades
WHERE exchange = {exchange:String}
  AND symbol = {symbol:String}
  AND committed_us >= {after_commit:UInt64}
  AND (committed_us, ts, trade_id) > ({after_commit:UInt64}, {after_ts:DateTime64(6, 'UTC')}, {after_id:UInt64})
ORDER BY committed_us, ts, trade_id
LIMIT {limit:UInt32};
