-- Candle windows in [start, end) (whole UTC days; optional filters; every timeframe bound, reader.py's
-- TIMEFRAMES) whose trade count in gold differs from silver's: what is left to mend after a
-- re-derivation (gold.recompute). Normally none.
SELECT exchange, symbol, timeframe, bucket, sum(silver) AS silver_trades, sum(gold) AS gold_trades
FROM
(
    SELECT exchange, symbol, timeframe,
           toDateTime(intDiv(toUnixTimestamp(ts), timeframe) * timeframe, 'UTC') AS bucket,
           count() AS silver, toUInt64(0) AS gold
    FROM silver_trades FINAL
    ARRAY JOIN {timeframes:Array(UInt32)} AS timeframe
    WHERE ts >= {start:DateTime64(6, 'UTC')} AND ts < {end:DateTime64(6, 'UTC')}
      AND ({exchange:String} = '' OR exchange = {exchange:String})
      AND ({symbol:String} = '' OR symbol = {symbol:String})
    GROUP BY exchange, symbol, timeframe, bucket
    UNION ALL
    SELECT exchange, symbol, timeframe, bucket,
           toUInt64(0) AS silver, countMerge(trades) AS gold
    FROM gold_ohlcv
    WHERE bucket >= {start:DateTime64(6, 'UTC')} AND bucket < {end:DateTime64(6, 'UTC')}
      AND ({exchange:String} = '' OR exchange = {exchange:String})
      AND ({symbol:String} = '' OR symbol = {symbol:String})
    GROUP BY exchange, symbol, timeframe, bucket
)
GROUP BY exchange, symbol, timeframe, bucket
HAVING silver_trades != gold_trades;
