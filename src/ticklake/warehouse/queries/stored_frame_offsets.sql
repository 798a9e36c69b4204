-- Which offsets of one topic partition raw_frames already holds, within a range.
SELECT DISTINCT bus_offset FROM raw_frames
WHERE bus_topic = {topic:String} AND bus_partition = {partition:Int32}
  AND bus_offset BETWEEN {low:Int64} AND {high:Int64};
