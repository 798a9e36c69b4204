-- The bus partition the market's newest stored trade at or below {trade_id} came through ('' / -1
-- when not through a Kafka bus): with several ingesters, the one holding that partition checks the
-- market (completeness.py).
SELECT bus_topic, bus_partition
FROM bronze_trades
WHERE exchange = {exchange:String} AND native_symbol = {native_symbol:String} AND trade_id <= {trade_id:UInt64}
ORDER BY trade_id DESC
LIMIT 1;
