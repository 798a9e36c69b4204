-- Candles of one market and timeframe in [start, end): the first {limit} from start when
-- newest_first = 0, the last {limit} before end when newest_first = 1 (the caller re-sorts).
SELECT
    bucket,
    argMinMerge(open) AS open,
    maxMerge(high) AS high,
    minMerge(low) AS low,
    argMaxMerge(close) AS close,
    sumMerge(volume) AS volume,
    sumMerge(quote_volume) AS quote_volume,
    sumMerge(buy_volume) AS buy_volume,
    countMerge(trades) AS trades
FROM gold_ohlcv
WHERE exchange = {exchange:String}
  AND symbol = {symbol:String}
  AND timeframe = {timeframe:UInt32}
  AND bucket >= {start:DateTime('UTC')}
  AND bucket < {end:DateTime('UTC')}
GROUP BY bucket
ORDER BY if({newest_first:Bool}, -toInt64(toUnixTimestamp(bucket)), toInt64(toUnixTimestamp(bucket)))
LIMIT {limit:UInt32};
