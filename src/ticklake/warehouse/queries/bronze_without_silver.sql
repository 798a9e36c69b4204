-- Bronze trades that reached neither silver nor dead letters.
SELECT exchange, symbol, native_symbol, trade_id, price, qty, toString(side) AS side,
       toUnixTimestamp64Micro(ts) AS ts_us, toUnixTimestamp64Micro(received_at) AS received_us, conn_id, frame_seq
FROM bronze_trades
WHERE received_at >= {since:DateTime64(6, 'UTC')}
  AND (exchange, native_symbol, trade_id) NOT IN (
      SELECT exchange, native_symbol, trade_id FROM silver_trades WHERE received_at >= {since:DateTime64(6, 'UTC')}
  )
  AND (exchange, native_symbol, trade_id) NOT IN (
      SELECT exchange, native_symbol, trade_id FROM dead_letters WHERE received_at >= {since:DateTime64(6, 'UTC')}
  )
ORDER BY exchange, native_symbol, trade_id;
