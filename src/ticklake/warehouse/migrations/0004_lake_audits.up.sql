-- ticklake warehouse, version 4: what each audit of the cold tier found (ticklake.lake.audit,
-- docs/lake.md "Audit"). One row per cold table partition compared in a run: the warm and cold row
-- counts and content checksums over the overlap both tiers must hold, and the verdict. A table the
-- audit could not check gets one row with status 'error' and the reason. Kept 90 days.
CREATE TABLE IF NOT EXISTS lake_audits
(
    run_id               String,
    checked_at           DateTime('UTC'),
    table                LowCardinality(String),
    partition            String,
    status               Enum8('ok' = 1, 'mismatch' = 2, 'error' = 3),
    warm_count           UInt64,
    cold_count           UInt64,
    cold_duplicate_keys  UInt64,
    warm_checksum        UInt64,
    cold_checksum        UInt64,
    -- The overlap compared: stored_at in (overlap_from, overlap_to], or for candles updated_at in it
    -- and windows closed before closed_before.
    overlap_from         DateTime('UTC'),
    overlap_to           DateTime('UTC'),
    closed_before        DateTime('UTC'),
    detail               String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(checked_at)
ORDER BY (table, checked_at, partition)
TTL checked_at + toIntervalDay(90);
