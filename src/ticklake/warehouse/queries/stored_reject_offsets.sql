-- Which offsets of one topic partition bus_dead_letters already holds, within a range.
SELECT DISTINCT offset FROM bus_dead_letters
WHERE topic = {topic:String} AND partition = {partition:Int32} AND offset BETWEEN {low:Int64} AND {high:Int64};
