-- When the warehouse first stored a trade of a market made at or after a moment: the commit time of
-- the earliest-committed such trade (committed_us: the batch's commit, warehouse/writer.py).
SELECT min(committed_us)
FROM silver_trades
WHERE exchange = {exchange:String}
  AND symbol = {symbol:String}
  AND ts >= fromUnixTimestamp64Micro({since_us:Int64}, 'UTC')
  AND committed_us > 0;
