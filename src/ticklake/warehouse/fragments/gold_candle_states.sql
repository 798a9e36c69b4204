-- The gold candle's aggregate states, computed from silver trades grouped by (exchange, symbol,
-- timeframe, bucket): the one definition that the queries recomputing gold from silver use
-- (queries/recompute_gold_windows.sql, queries/rederive_gold.sql), in gold_ohlcv's column order.
-- open/close break ties on equal timestamps by trade id (stack.md, pitfall 3); quote volume is summed
-- exactly at 36 decimals (the VWAP is quote_volume / volume); updated_at is when the candle last
-- changed, which retention uses.
-- Migration 0001's view gold_ohlcv_mv wrote the same list before this file existed, and keeps it (a
-- migration that ran never changes): tests/warehouse/test_sql_facts.py checks both still compute the
-- same candles. A change here is a change of gold's definition: it needs a new migration that
-- replaces the view too.
argMinState(price, (ts, trade_id)) AS open,
maxState(price) AS high,
minState(price) AS low,
argMaxState(price, (ts, trade_id)) AS close,
sumState(qty) AS volume,
sumState(toDecimal256(price, 18) * qty) AS quote_volume,
sumState(if(side = 'buy', qty, toDecimal128(0, 18))) AS buy_volume,
countState() AS trades,
max(now()) AS updated_at
