-- Gold windows recomputed from silver, one timeframe at a time. The candle is
-- fragments/gold_candle_states.sql, as in rederive_gold.sql; the candle property tests compare gold
-- against an independent recomputation.
INSERT INTO gold_ohlcv
SELECT
    exchange,
    symbol,
    {timeframe:UInt32} AS timeframe,
    toDateTime(intDiv(toUnixTimestamp(ts), {timeframe:UInt32}) * {timeframe:UInt32}, 'UTC') AS bucket,
    {{gold_candle_states}}
FROM silver_trades FINAL
WHERE exchange = {exchange:String} AND symbol = {symbol:String}
  AND ts >= {low:DateTime64(6, 'UTC')} AND ts < {high:DateTime64(6, 'UTC')}
  AND has({buckets:Array(DateTime('UTC'))},
          toDateTime(intDiv(toUnixTimestamp(ts), {timeframe:UInt32}) * {timeframe:UInt32}, 'UTC'))
GROUP BY exchange, symbol, timeframe, bucket;
