-- Whether silver has its commit order (migration 0006): the writer fills it where it exists.
SELECT count() FROM system.columns
WHERE database = currentDatabase() AND table = 'silver_trades' AND name = 'committed_us';
