-- Which of these ids bronze holds, and the bus position each arrived from ('' / -1: not from a Kafka bus).
SELECT trade_id, any(bus_topic), any(bus_partition), any(bus_offset)
FROM bronze_trades
WHERE exchange = {exchange:String}
  AND native_symbol = {native_symbol:String}
  AND trade_id BETWEEN {low:UInt64} AND {high:UInt64}
  AND has({ids:Array(UInt64)}, trade_id)
GROUP BY trade_id;
