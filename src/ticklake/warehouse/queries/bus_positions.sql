-- Where the warehouse stands on each topic partition: the next offset to read (positions stored last
-- in every batch) and the highest offset any stored row came from (rows stored first). Between the
-- two, a batch may have been cut short by a crash.
SELECT topic, partition, max(next_offset), max(stored_at)
FROM bus_positions
WHERE has({topics:Array(String)}, topic)
GROUP BY topic, partition;
