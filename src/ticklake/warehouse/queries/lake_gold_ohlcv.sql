-- Candles of one timeframe for the cold tier: the windows in [closed_from, closed_before) (closed
-- since the last offload), and every window of a bucket before closed_from in which some candle
-- changed after the cold copy was taken (updated_at > changed_after: a late trade, a repair). Whole
-- buckets are returned, every market, because the cold tier rewrites a late bucket as a whole.
-- In the cold table's sort order (tables.py sort_keys).
--
-- FINAL merges the partial states of a candle (the rows sharing its sorting key) as GROUP BY with
-- -Merge functions would, but in key order, without a hash table, and the rows come out sorted: on
-- 288k 1m candles (100 markets, 2 days) 0.58 s where GROUP BY took 0.85 s and a pyarrow sort more.
-- The filter is a PREWHERE: ClickHouse does not move WHERE to PREWHERE under FINAL, and would merge
-- the states of every timeframe first (2.3x slower for 1h candles, measured). It is exact here because it
-- reads sorting-key columns only (timeframe, bucket): the rows of one candle all pass or all fail.
-- Decimals come out as Decimal(38, 18), the cold type itself (text cost a conversion each way);
-- quote_volume (Decimal(76, 36), beyond Iceberg's 38 digits) as its exact text.
WITH late_buckets AS
(
    SELECT DISTINCT bucket
    FROM gold_ohlcv
    WHERE timeframe = {timeframe:UInt32}
      AND bucket < toDateTime({closed_from:UInt32}, 'UTC')
      AND updated_at > toDateTime({changed_after:UInt32}, 'UTC')
)
SELECT
    toString(exchange) AS exchange,
    toString(symbol) AS symbol,
    bucket,
    finalizeAggregation(open) AS open,
    finalizeAggregation(high) AS high,
    finalizeAggregation(low) AS low,
    finalizeAggregation(close) AS close,
    finalizeAggregation(volume) AS volume,
    toString(finalizeAggregation(quote_volume)) AS quote_volume,
    finalizeAggregation(buy_volume) AS buy_volume,
    finalizeAggregation(trades) AS trades,
    updated_at
FROM gold_ohlcv FINAL
PREWHERE timeframe = {timeframe:UInt32}
  AND ((bucket >= toDateTime({closed_from:UInt32}, 'UTC') AND bucket < toDateTime({closed_before:UInt32}, 'UTC'))
       OR bucket IN late_buckets)
ORDER BY exchange, symbol, bucket;
