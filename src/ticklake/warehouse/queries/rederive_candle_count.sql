-- How many candles (market x timeframe x window) gold holds in [start, end), optional filters.
SELECT count()
FROM
(
    SELECT DISTINCT exchange, symbol, timeframe, bucket
    FROM gold_ohlcv
    WHERE bucket >= {start:DateTime64(6, 'UTC')} AND bucket < {end:DateTime64(6, 'UTC')}
      AND ({exchange:String} = '' OR exchange = {exchange:String})
      AND ({symbol:String} = '' OR symbol = {symbol:String})
);
