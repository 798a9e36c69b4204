-- Candles of every timeframe (the bound list, warehouse/reader.py's TIMEFRAMES) computed again from
-- silver for exchange time in [start, end) (whole UTC days), optional filters. The candle is
-- fragments/gold_candle_states.sql, as in recompute_gold_windows.sql.
INSERT INTO gold_ohlcv
SELECT
    exchange,
    symbol,
    timeframe,
    toDateTime(intDiv(toUnixTimestamp(ts), timeframe) * timeframe, 'UTC') AS bucket,
    {{gold_candle_states}}
FROM silver_trades FINAL
ARRAY JOIN {timeframes:Array(UInt32)} AS timeframe
WHERE ts >= {start:DateTime64(6, 'UTC')} AND ts < {end:DateTime64(6, 'UTC')}
  AND ({exchange:String} = '' OR exchange = {exchange:String})
  AND ({symbol:String} = '' OR symbol = {symbol:String})
GROUP BY exchange, symbol, timeframe, bucket;
