-- ticklake warehouse, version 5: cheap small inserts. The ingester writes a few rows to each layer
-- several times a second (a trade must reach its candle within 200 ms), and every insert makes a new
-- part in each table it touches, the gold view's included. A part written the default way is a
-- directory of a dozen files with compressed marks and a sparse-column analysis: a write of 4 trades
-- cost 32.5 ms of CPU through the layers that way, 18.5 ms with parts packed into one file (`ticklake
-- bench --stages platform`; docs/architecture.md, "What the platform costs"). Parts smaller than 10 MiB, which is every part an
-- insert makes and most merges make, are therefore packed into one file, with plain marks and no
-- sparse columns; bigger parts keep ClickHouse's usual layout. Existing parts are left as they are.
-- And merges wait for about 20 parts of a size instead of 5 (merge_selector_base): with a few rows per
-- insert, the default folded new parts into the existing ones every few inserts, rewriting them each
-- time (merges cost 0.13 of a core at 7 writes/s over 18,000 stored trades; 0.013 with 20).
ALTER TABLE raw_frames MODIFY SETTING min_bytes_for_full_part_storage = 10485760, compress_marks = 0, compress_primary_key = 0, ratio_of_defaults_for_sparse_serialization = 1, merge_selector_base = 20;
ALTER TABLE bronze_trades MODIFY SETTING min_bytes_for_full_part_storage = 10485760, compress_marks = 0, compress_primary_key = 0, ratio_of_defaults_for_sparse_serialization = 1, merge_selector_base = 20;
ALTER TABLE silver_trades MODIFY SETTING min_bytes_for_full_part_storage = 10485760, compress_marks = 0, compress_primary_key = 0, ratio_of_defaults_for_sparse_serialization = 1, merge_selector_base = 20;
ALTER TABLE dead_letters MODIFY SETTING min_bytes_for_full_part_storage = 10485760, compress_marks = 0, compress_primary_key = 0, ratio_of_defaults_for_sparse_serialization = 1, merge_selector_base = 20;
ALTER TABLE gold_ohlcv MODIFY SETTING min_bytes_for_full_part_storage = 10485760, compress_marks = 0, compress_primary_key = 0, ratio_of_defaults_for_sparse_serialization = 1, merge_selector_base = 20;
ALTER TABLE bus_positions MODIFY SETTING min_bytes_for_full_part_storage = 10485760, compress_marks = 0, compress_primary_key = 0, ratio_of_defaults_for_sparse_serialization = 1, merge_selector_base = 20;
ALTER TABLE bus_dead_letters MODIFY SETTING min_bytes_for_full_part_storage = 10485760, compress_marks = 0, compress_primary_key = 0, ratio_of_defaults_for_sparse_serialization = 1, merge_selector_base = 20;
