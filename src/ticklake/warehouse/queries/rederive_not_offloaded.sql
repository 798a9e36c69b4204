-- Rows of {table} in the range (exchange time in [start, end), optional filters) stored after the
-- cold table's watermark: the lake does not hold them yet.
SELECT count()
FROM {table:Identifier}
WHERE ts >= {start:DateTime64(6, 'UTC')} AND ts < {end:DateTime64(6, 'UTC')}
  AND ({exchange:String} = '' OR exchange = {exchange:String})
  AND ({symbol:String} = '' OR symbol = {symbol:String})
  AND stored_at > toDateTime({watermark:UInt32}, 'UTC');
