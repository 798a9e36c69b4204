-- Rows per layer (for health and the command line's status).
SELECT
    (SELECT count() FROM raw_frames) AS raw_frames,
    (SELECT count() FROM bronze_trades) AS bronze_trades,
    (SELECT count() FROM silver_trades) AS silver_trades,
    (SELECT count() FROM dead_letters) AS dead_letters,
    (SELECT count() FROM gold_ohlcv) AS gold_rows;
