-- Remove every candle window of every timeframe that starts in [start, end) (whole UTC days, so each
-- window lies inside the range), optional filters.
DELETE FROM gold_ohlcv
WHERE bucket >= {start:DateTime64(6, 'UTC')} AND bucket < {end:DateTime64(6, 'UTC')}
  AND ({exchange:String} = '' OR exchange = {exchange:String})
  AND ({symbol:String} = '' OR symbol = {symbol:String});
