-- Candles of one market and timeframe in [start, end): the first {limit} from start when
-- newest_first = 0, the last {limit} before end when newest_first = 1 (the caller re-sorts).
-- Decimals come back as their exact shortest text (no trailing zeros): the API sends them as they
-- are, and decoding 4,000 Decimal values a request would cost more than the query.
SELECT
    toUnixTimestamp(bucket) AS start,
    toString(argMinMerge(open)) AS open,
    toString(maxMerge(high)) AS high,
    toString(minMerge(low)) AS low,
    toString(argMaxMerge(close)) AS close,
    toString(sumMerge(volume)) AS volume,
    toString(sumMerge(quote_volume)) AS quote_volume,
    toString(sumMerge(buy_volume)) AS buy_volume,
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
