-- Version 6: the order in which silver rows were committed, so that a live-stream client resuming
-- after a disconnect gets exactly the trades stored since, late ones (a backfill older than what it
-- saw) included (api/live.py). The writer sets it per batch: microseconds, increasing. Rows stored
-- before this version, or re-derived by SQL, read 0: they are resumed from by (time, id) only.
ALTER TABLE silver_trades ADD COLUMN IF NOT EXISTS committed_us UInt64 DEFAULT 0;
ALTER TABLE silver_trades ADD INDEX IF NOT EXISTS committed_us_minmax committed_us TYPE minmax GRANULARITY 1;
