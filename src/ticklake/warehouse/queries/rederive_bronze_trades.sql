-- One market's bronze trades with exchange time in [start, end), in the layout the writer validates
-- (arrow.bronze): the source of a silver re-derivation from the warm tier.
SELECT exchange, native_symbol, symbol,
       trade_id, price, qty, toString(side) AS side, ts, received_at, conn_id, frame_seq
FROM bronze_trades FINAL
WHERE exchange = {exchange:String} AND symbol = {symbol:String}
  AND ts >= {start:DateTime64(6, 'UTC')} AND ts < {end:DateTime64(6, 'UTC')};
