-- Remove the dead letters a silver re-derivation rebuilds: those that came from bronze (not the rules
-- {not_from_bronze}), exchange time in [start, end), optional filters.
DELETE FROM dead_letters
WHERE ts >= {start:DateTime64(6, 'UTC')} AND ts < {end:DateTime64(6, 'UTC')}
  AND ({exchange:String} = '' OR exchange = {exchange:String})
  AND ({symbol:String} = '' OR symbol = {symbol:String})
  AND NOT has({not_from_bronze:Array(String)}, rule);
