-- The newest stored_at second the cold tier may offload now: whole seconds before the server's clock
-- by the safety lag, so no insert still in flight (or still to come in this second) lands at or below
-- it. The server's clock, not the offloader's: stored_at is set by the server (DEFAULT now()).
SELECT toUInt32(toUnixTimestamp(now()) - {safety_lag_s:UInt32}) AS upper;
