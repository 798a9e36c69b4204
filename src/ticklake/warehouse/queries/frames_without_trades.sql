-- Raw frames that carried trades but left no bronze row: the process stopped between the raw and
-- bronze inserts. (A frame whose trades were all duplicates shows up too; re-parsing it is harmless.)
SELECT exchange, conn_id, frame_seq, toUnixTimestamp64Micro(received_at) AS received_us, payload, source,
       native_symbol
FROM raw_frames
WHERE received_at >= {since:DateTime64(6, 'UTC')}
  AND trade_count > 0
  AND error = ''
  AND (conn_id, frame_seq) NOT IN (
      SELECT conn_id, frame_seq FROM bronze_trades WHERE received_at >= {since:DateTime64(6, 'UTC')}
  )
ORDER BY received_at, conn_id, frame_seq;
