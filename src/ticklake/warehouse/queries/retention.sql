-- Retention from settings, applied at every start (idempotent; existing parts are not rewritten
-- because the client sets materialize_ttl_after_modify = 0).
ALTER TABLE raw_frames MODIFY TTL stored_at + toIntervalHour({raw_hours:UInt32});
ALTER TABLE bronze_trades MODIFY TTL stored_at + toIntervalDay({bronze_days:UInt32});
ALTER TABLE silver_trades MODIFY TTL stored_at + toIntervalDay({silver_days:UInt32});
ALTER TABLE dead_letters MODIFY TTL stored_at + toIntervalDay({dead_letter_days:UInt32});
ALTER TABLE gold_ohlcv MODIFY TTL
    updated_at + toIntervalDay({gold_days:UInt32}) DELETE WHERE timeframe != 86400,
    updated_at + toIntervalDay({gold_1d_days:UInt32}) DELETE WHERE timeframe = 86400;
ALTER TABLE bus_dead_letters MODIFY TTL stored_at + toIntervalDay({dead_letter_days:UInt32});
