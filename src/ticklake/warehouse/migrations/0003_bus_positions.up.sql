-- ticklake warehouse, version 3: where each row came from on the bus, and how far each partition is
-- written. In distributed mode the ingester resumes from what ClickHouse holds, not from offsets
-- committed to the broker: the rows and their positions are stored by the same inserts, so a crash
-- can never leave them disagreeing in the direction that loses data (docs/architecture.md, D10).

-- The message a raw frame or a bronze trade arrived in (topic, partition, offset); '' / -1 for rows
-- that did not come through a Kafka bus (embedded mode, replays, repair).
ALTER TABLE raw_frames ADD COLUMN IF NOT EXISTS bus_topic LowCardinality(String) DEFAULT '';
ALTER TABLE raw_frames ADD COLUMN IF NOT EXISTS bus_partition Int32 DEFAULT -1;
ALTER TABLE raw_frames ADD COLUMN IF NOT EXISTS bus_offset Int64 DEFAULT -1;
ALTER TABLE bronze_trades ADD COLUMN IF NOT EXISTS bus_topic LowCardinality(String) DEFAULT '';
ALTER TABLE bronze_trades ADD COLUMN IF NOT EXISTS bus_partition Int32 DEFAULT -1;
ALTER TABLE bronze_trades ADD COLUMN IF NOT EXISTS bus_offset Int64 DEFAULT -1;

-- The next offset to read per topic partition, inserted after every other row of a batch. The
-- highest next_offset wins (read with max(), never a plain SELECT: a merge may not have run yet).
CREATE TABLE IF NOT EXISTS bus_positions
(
    topic        LowCardinality(String),
    partition    Int32,
    next_offset  Int64,
    stored_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(next_offset)
ORDER BY (topic, partition)
SETTINGS non_replicated_deduplication_window = 1000;

-- Messages the ingester could not decode (bad bytes, unknown schema version): kept whole, with the
-- reason, instead of stopping consumption or dropping them. One row per message position.
CREATE TABLE IF NOT EXISTS bus_dead_letters
(
    topic        LowCardinality(String),
    partition    Int32,
    offset       Int64,
    key          String,
    headers      String,
    value        String CODEC(ZSTD(3)),
    reason       LowCardinality(String),
    detail       String,
    stored_at    DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(stored_at)
ORDER BY (topic, partition, offset)
SETTINGS non_replicated_deduplication_window = 1000;
