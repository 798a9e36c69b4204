-- The migration ledger, append-only: one row each time a version is applied or rolled back.
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version     UInt32,
    name        String,
    checksum    String,
    direction   Enum8('up' = 1, 'down' = 2),
    applied_at  DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY (version, applied_at);
