-- Candles of every timeframe computed again from silver for exchange time in [start, end) (whole
-- UTC days), optional filters. The aggregates must match gold_ohlcv_mv (migration 0001) and
-- recompute_gold_windows.sql.
INSERT INTO gold_ohlcv
SELECT
    exchange,
    symbol,
    timeframe,
    toDateTime(intDiv(toUnixTimestamp(ts), timeframe) * timeframe, 'UTC') AS bucket,
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
ARRAY JOIN [60, 300, 900, 1800, 3600, 86400] AS timeframe
WHERE ts >= {start:DateTime64(6, 'UTC')} AND ts < {end:DateTime64(6, 'UTC')}
  AND ({exchange:String} = '' OR exchange = {exchange:String})
  AND ({symbol:String} = '' OR symbol = {symbol:String})
GROUP BY exchange, symbol, timeframe, bucket;
