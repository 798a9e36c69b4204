-- Which of these ids (all at or below the newest stored one) bronze already holds.
SELECT DISTINCT trade_id
FROM bronze_trades
WHERE exchange = {exchange:String}
  AND native_symbol = {native_symbol:String}
  AND trade_id BETWEEN {low:UInt64} AND {high:UInt64}
  AND has({ids:Array(UInt64)}, trade_id);
