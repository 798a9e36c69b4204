-- The newest receive time in any layer: the start-up check looks back from here.
SELECT greatest(
    (SELECT max(received_at) FROM raw_frames),
    (SELECT max(received_at) FROM bronze_trades),
    (SELECT max(received_at) FROM silver_trades)
);
