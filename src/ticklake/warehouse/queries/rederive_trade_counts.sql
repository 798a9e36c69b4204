-- Trades per market and UTC day in bronze_trades or silver_trades ({table}) with exchange time in
-- [start, end), optionally one exchange and/or one symbol ('' = all): what a re-derivation reads or
-- replaces, checked before anything is changed.
SELECT exchange, symbol, toDate(ts) AS day, count() AS trades
FROM {table:Identifier} FINAL
WHERE ts >= {start:DateTime64(6, 'UTC')} AND ts < {end:DateTime64(6, 'UTC')}
  AND ({exchange:String} = '' OR exchange = {exchange:String})
  AND ({symbol:String} = '' OR symbol = {symbol:String})
GROUP BY exchange, symbol, day;
