-- Versions whose latest ledger row is an "up".
SELECT version, argMax(name, applied_at) AS name, argMax(checksum, applied_at) AS checksum
FROM schema_migrations
GROUP BY version
HAVING argMax(direction, applied_at) = 'up'
ORDER BY version;
