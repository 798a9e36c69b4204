-- Which offsets of one topic partition, within a range, a raw frame or a bus dead letter was stored from.
SELECT bus_offset FROM raw_frames
WHERE bus_topic = {topic:String} AND bus_partition = {partition:Int32}
  AND bus_offset BETWEEN {low:Int64} AND {high:Int64}
UNION DISTINCT
SELECT offset FROM bus_dead_letters
WHERE topic = {topic:String} AND partition = {partition:Int32} AND offset BETWEEN {low:Int64} AND {high:Int64};
