-- The warehouse's clock (Unix seconds): the cold tier audit counts retention from it, because
-- ClickHouse expires rows (TTL) by its own clock, not the auditor's.
SELECT toUInt32(toUnixTimestamp(now())) AS now;
