-- The highest offset per topic partition that any stored row came from, among rows stored since.
SELECT topic, partition, max(offset) FROM (
    SELECT bus_topic AS topic, bus_partition AS partition, bus_offset AS offset FROM raw_frames
    WHERE has({topics:Array(String)}, bus_topic) AND stored_at >= {since:DateTime('UTC')}
    UNION ALL
    SELECT bus_topic, bus_partition, bus_offset FROM bronze_trades
    WHERE has({topics:Array(String)}, bus_topic) AND stored_at >= {since:DateTime('UTC')}
    UNION ALL
    SELECT topic, partition, offset FROM bus_dead_letters
    WHERE has({topics:Array(String)}, topic) AND stored_at >= {since:DateTime('UTC')}
)
GROUP BY topic, partition;
