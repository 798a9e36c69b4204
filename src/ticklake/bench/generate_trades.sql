-- Synthetic silver trades for the serving benchmark, generated inside ClickHouse (the view keeps gold).
-- {count} trades over {symbols} markets of one exchange, one trade every {step_us} microseconds per market.
INSERT INTO silver_trades (exchange, symbol, native_symbol, trade_id, price, qty, side, ts, received_at, conn_id, frame_seq)
SELECT
    'binance' AS exchange,
    concat('SYM', toString(number % {symbols:UInt32}), '/USDT') AS symbol,
    concat('SYM', toString(number % {symbols:UInt32}), 'USDT') AS native_symbol,
    number AS trade_id,
    toDecimal128(50000, 18) + toDecimal128(cityHash64(number) % 100000, 18) / 100 AS price,
    toDecimal128(cityHash64(number, 1) % 100000 + 1, 18) / 100000 AS qty,
    if(number % 2 = 0, 'buy', 'sell') AS side,
    fromUnixTimestamp64Micro(toInt64({start_us:Int64} + intDiv(number, {symbols:UInt32}) * {step_us:UInt64}), 'UTC') AS ts,
    ts AS received_at,
    'bench' AS conn_id,
    number AS frame_seq
FROM numbers({offset:UInt64}, {count:UInt64});
