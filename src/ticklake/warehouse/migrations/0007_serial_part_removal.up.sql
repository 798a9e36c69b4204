-- ticklake warehouse, version 7: outdated parts are removed one after another, never by a burst of
-- threads. Past concurrent_part_removal_threshold (default 100) outdated parts, a table's cleanup
-- removes them on up to 128 threads of ClickHouse's global pool, which then stay parked for good
-- (~124 threads, ~19 MB of per-thread state in the embedded process, measured). With small parts
-- packed into one file (version 5) each removal is one unlink: serial removal costs nothing noticeable.
ALTER TABLE raw_frames MODIFY SETTING concurrent_part_removal_threshold = 1000000000;
ALTER TABLE bronze_trades MODIFY SETTING concurrent_part_removal_threshold = 1000000000;
ALTER TABLE silver_trades MODIFY SETTING concurrent_part_removal_threshold = 1000000000;
ALTER TABLE dead_letters MODIFY SETTING concurrent_part_removal_threshold = 1000000000;
ALTER TABLE gold_ohlcv MODIFY SETTING concurrent_part_removal_threshold = 1000000000;
ALTER TABLE bus_positions MODIFY SETTING concurrent_part_removal_threshold = 1000000000;
ALTER TABLE bus_dead_letters MODIFY SETTING concurrent_part_removal_threshold = 1000000000;
ALTER TABLE lake_audits MODIFY SETTING concurrent_part_removal_threshold = 1000000000;
