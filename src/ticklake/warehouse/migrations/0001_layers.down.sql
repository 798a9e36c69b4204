-- Roll back version 1: drop the layers (the view first, so no insert fires into a dropped table).
DROP VIEW IF EXISTS gold_ohlcv_mv;
DROP TABLE IF EXISTS gold_ohlcv;
DROP TABLE IF EXISTS dead_letters;
DROP TABLE IF EXISTS silver_trades;
DROP TABLE IF EXISTS bronze_trades;
DROP TABLE IF EXISTS raw_frames;
