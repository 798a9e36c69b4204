-- Roll back version 3: forget bus positions. An ingester of an older version resumes from the
-- offsets committed to the broker, which every batch also commits (asynchronously) for this reason.
DROP TABLE IF EXISTS bus_dead_letters;
DROP TABLE IF EXISTS bus_positions;
ALTER TABLE bronze_trades DROP COLUMN IF EXISTS bus_offset;
ALTER TABLE bronze_trades DROP COLUMN IF EXISTS bus_partition;
ALTER TABLE bronze_trades DROP COLUMN IF EXISTS bus_topic;
ALTER TABLE raw_frames DROP COLUMN IF EXISTS bus_offset;
ALTER TABLE raw_frames DROP COLUMN IF EXISTS bus_partition;
ALTER TABLE raw_frames DROP COLUMN IF EXISTS bus_topic;
