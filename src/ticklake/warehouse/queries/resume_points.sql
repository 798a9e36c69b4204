-- The newest stored trades of every venue market (up to {window} per market): where its feed resumes
-- and what it backfills after a start (gaps.resume_from: the newest, and the holes among them). Bronze holds
-- every trade the venue sent, valid or not, so a dead-lettered trade still counts.
SELECT exchange, native_symbol, groupArray(trade_id), groupArray(toUnixTimestamp64Micro(ts))
FROM (
    SELECT exchange, native_symbol, trade_id, ts
    FROM bronze_trades
    ORDER BY trade_id DESC
    LIMIT {window:UInt32} BY exchange, native_symbol
)
GROUP BY exchange, native_symbol;
