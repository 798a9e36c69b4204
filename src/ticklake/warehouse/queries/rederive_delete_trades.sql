-- Remove the range being re-derived from bronze_trades or silver_trades ({table}): exchange time in
-- [start, end), optional filters. Lightweight delete: the rows are gone for every query once it returns.
DELETE FROM {table:Identifier}
WHERE ts >= {start:DateTime64(6, 'UTC')} AND ts < {end:DateTime64(6, 'UTC')}
  AND ({exchange:String} = '' OR exchange = {exchange:String})
  AND ({symbol:String} = '' OR symbol = {symbol:String});
