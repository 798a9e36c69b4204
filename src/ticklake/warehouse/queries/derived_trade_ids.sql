-- Which of these trades (of one market, within a time range) reached silver or dead letters.
-- The time range lets silver's sort key (exchange, symbol, ts, trade_id) narrow the scan.
SELECT trade_id FROM silver_trades
WHERE exchange = {exchange:String} AND native_symbol = {native_symbol:String}
  AND ts BETWEEN {low:DateTime64(6, 'UTC')} AND {high:DateTime64(6, 'UTC')}
  AND has({ids:Array(UInt64)}, trade_id)
UNION DISTINCT
SELECT trade_id FROM dead_letters
WHERE exchange = {exchange:String} AND native_symbol = {native_symbol:String} AND has({ids:Array(UInt64)}, trade_id);
