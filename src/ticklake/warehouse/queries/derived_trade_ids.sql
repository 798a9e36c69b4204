-- Which of these trades reached silver or dead letters.
SELECT trade_id FROM silver_trades
WHERE exchange = {exchange:String} AND native_symbol = {native_symbol:String} AND has({ids:Array(UInt64)}, trade_id)
UNION DISTINCT
SELECT trade_id FROM dead_letters
WHERE exchange = {exchange:String} AND native_symbol = {native_symbol:String} AND has({ids:Array(UInt64)}, trade_id);
