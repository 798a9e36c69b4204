-- The payloads of these raw frames (conn_id, frame_seq), received in [low, high]: the raw frame a
-- re-derived dead letter keeps.
SELECT conn_id, frame_seq, payload
FROM raw_frames
WHERE received_at >= {low:DateTime64(6, 'UTC')} AND received_at <= {high:DateTime64(6, 'UTC')}
  AND has({frames:Array(Tuple(String, UInt64))}, (conn_id, frame_seq))
LIMIT 1 BY conn_id, frame_seq;
