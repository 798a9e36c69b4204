SELECT payload
FROM raw_frames
WHERE conn_id = {conn_id:String} AND frame_seq = {frame_seq:UInt64}
LIMIT 1;
