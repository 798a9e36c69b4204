-- Roll back version 7: outdated parts are removed in parallel again past 100 of them.
ALTER TABLE raw_frames RESET SETTING concurrent_part_removal_threshold;
ALTER TABLE bronze_trades RESET SETTING concurrent_part_removal_threshold;
ALTER TABLE silver_trades RESET SETTING concurrent_part_removal_threshold;
ALTER TABLE dead_letters RESET SETTING concurrent_part_removal_threshold;
ALTER TABLE gold_ohlcv RESET SETTING concurrent_part_removal_threshold;
ALTER TABLE bus_positions RESET SETTING concurrent_part_removal_threshold;
ALTER TABLE bus_dead_letters RESET SETTING concurrent_part_removal_threshold;
ALTER TABLE lake_audits RESET SETTING concurrent_part_removal_threshold;
