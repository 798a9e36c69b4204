-- Roll back version 5: new parts are written ClickHouse's default way again; parts already written
-- packed stay readable as they are and are rewritten by merges in time.
ALTER TABLE raw_frames RESET SETTING min_bytes_for_full_part_storage, compress_marks, compress_primary_key, ratio_of_defaults_for_sparse_serialization, merge_selector_base;
ALTER TABLE bronze_trades RESET SETTING min_bytes_for_full_part_storage, compress_marks, compress_primary_key, ratio_of_defaults_for_sparse_serialization, merge_selector_base;
ALTER TABLE silver_trades RESET SETTING min_bytes_for_full_part_storage, compress_marks, compress_primary_key, ratio_of_defaults_for_sparse_serialization, merge_selector_base;
ALTER TABLE dead_letters RESET SETTING min_bytes_for_full_part_storage, compress_marks, compress_primary_key, ratio_of_defaults_for_sparse_serialization, merge_selector_base;
ALTER TABLE gold_ohlcv RESET SETTING min_bytes_for_full_part_storage, compress_marks, compress_primary_key, ratio_of_defaults_for_sparse_serialization, merge_selector_base;
ALTER TABLE bus_positions RESET SETTING min_bytes_for_full_part_storage, compress_marks, compress_primary_key, ratio_of_defaults_for_sparse_serialization, merge_selector_base;
ALTER TABLE bus_dead_letters RESET SETTING min_bytes_for_full_part_storage, compress_marks, compress_primary_key, ratio_of_defaults_for_sparse_serialization, merge_selector_base;
