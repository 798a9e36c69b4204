-- Dead letters per market and UTC day that came from bronze (every rule but {not_from_bronze}: those
-- trades could not be stored in bronze at all), exchange time in [start, end), optional filters.
SELECT exchange, symbol, toDate(ts) AS day, count() AS trades
FROM dead_letters FINAL
WHERE ts >= {start:DateTime64(6, 'UTC')} AND ts < {end:DateTime64(6, 'UTC')}
  AND ({exchange:String} = '' OR exchange = {exchange:String})
  AND ({symbol:String} = '' OR symbol = {symbol:String})
  AND NOT has({not_from_bronze:Array(String)}, rule)
GROUP BY exchange, symbol, day;
