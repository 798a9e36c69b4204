-- Gold windows recomputed from silver. The aggregates must match gold_ohlcv_mv (migration 0001);
-- the candle property tests compare both against an independent recomputation.
INSERT INTO gold_ohlcv
SELECT
    exchange,
    symbol,
    {timeframe:UInt32} AS timeframe,
    toDateTime(intDiv(toUnixTimestamp(ts), {timeframe:UInt32}) * {timeframe:UInt32}, 'UTC') AS bucket,
    argMinState(price, (ts, trade_id)) AS open,
    maxState(price) AS high,
    minState(price) AS low,
    argMaxState(price, (ts, trade_id)) AS close,
    sumState(qty) AS volume,
    sumState(toDecimal256(price, 18) * qty) AS quote_volume,
    sumState(if(side = 'buy', qty, toDecimal128(0, 18))) AS buy_volume,
    countState() AS trades,
    max(now()) AS updated_at
FROM silver_trades FINAL
WHERE exchange = {exchange:String} AND symbol = {symbol:String}
  AND ts >= {low:DateTime64(6, 'UTC')} AND ts < {high:DateTime64(6, 'UTC')}
  AND has({buckets:Array(DateTime('UTC'))},
          toDateTime(intDiv(toUnixTimestamp(ts), {timeframe:UInt32}) * {timeframe:UInt32}, 'UTC'))
GROUP BY exchange, symbol, timeframe, bucket;
