-- ticklake warehouse, version 5: cheap small inserts. The ingester writes a few rows to each layer
-- several times a second (a trade must reach its candle within 200 ms), and every insert makes a new
-- part in each table it touches, the gold view's included. A part written the default way is a
-- directory of a dozen files with compressed marks and a sparse-column analysis; measured in one
-- process here, that is ~15 ms of CPU per 4-row insert, where a part packed into one file costs ~5 ms
-- (docs/architecture.md, "What an insert costs"). Parts smaller than 10 MiB, which is every part an
-- insert makes and most merges make, are therefore packed into one file, with plain marks and no
-- sparse columns; bigger parts keep ClickHouse's usual layout. Existing parts are left as they are.
ALTER TABLE raw_frames MODIFY SETTING min_bytes_for_full_part_storage = 10485760, compress_marks = 0, compress_primary_key = 0, ratio_of_defaults_for_sparse_serialization = 1;
ALTER TABLE bronze_trades MODIFY SETTING min_bytes_for_full_part_storage = 10485760, compress_marks = 0, compress_primary_key = 0, ratio_of_defaults_for_sparse_serialization = 1;
ALTER TABLE silver_trades MODIFY SETTING min_bytes_for_full_part_storage = 10485760, compress_marks = 0, compress_primary_key = 0, ratio_of_defaults_for_sparse_serialization = 1;
ALTER TABLE dead_letters MODIFY SETTING min_bytes_for_full_part_storage = 10485760, compress_marks = 0, compress_primary_key = 0, ratio_of_defaults_for_sparse_serialization = 1;
ALTER TABLE gold_ohlcv MODIFY SETTING min_bytes_for_full_part_storage = 10485760, compress_marks = 0, compress_primary_key = 0, ratio_of_defaults_for_sparse_serialization = 1;
ALTER TABLE bus_positions MODIFY SETTING min_bytes_for_full_part_storage = 10485760, compress_marks = 0, compress_primary_key = 0, ratio_of_defaults_for_sparse_serialization = 1;
ALTER TABLE bus_dead_letters MODIFY SETTING min_bytes_for_full_part_storage = 10485760, compress_marks = 0, compress_primary_key = 0, ratio_of_defaults_for_sparse_serialization = 1;
