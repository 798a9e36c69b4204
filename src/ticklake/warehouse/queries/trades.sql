-- Silver trades of one market in [start, end), in (exchange time, trade id) order, resuming after a
-- cursor (the last row of the previous page).
SELECT trade_id, toUnixTimestamp64Micro(ts) AS ts_us, price, qty, toString(side) AS side,
       toUnixTimestamp64Micro(received_at) AS received_us, native_symbol
FROM silver_trades
WHERE exchange = {exchange:String}
  AND symbol = {symbol:String}
  AND ts >= {start:DateTime64(6, 'UTC')}
  AND ts < {end:DateTime64(6, 'UTC')}
  AND (ts, trade_id) > ({after_ts:DateTime64(6, 'UTC')}, {after_id:UInt64})
ORDER BY ts, trade_id
LIMIT {limit:UInt32};
