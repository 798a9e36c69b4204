-- The newest stored trade of every venue market: where its feed resumes (and backfills from) after a
-- start. Bronze holds every trade the venue sent, valid or not, so a dead-lettered last trade still counts.
SELECT exchange, native_symbol, max(trade_id) AS last_id, argMax(toUnixTimestamp64Micro(ts), trade_id) AS last_ts_us
FROM bronze_trades
GROUP BY exchange, native_symbol;
