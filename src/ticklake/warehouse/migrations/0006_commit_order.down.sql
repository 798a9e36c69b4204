-- Roll back version 6: the commit order is dropped (a stream client then resumes by (time, id)).
ALTER TABLE silver_trades DROP INDEX IF EXISTS committed_us_minmax;
ALTER TABLE silver_trades DROP COLUMN IF EXISTS committed_us;
