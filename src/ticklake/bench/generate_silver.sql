-- Synthetic silver trades for the completeness benchmark, generated inside ClickHouse (the view keeps
-- gold). {count} trades over {symbols} markets of one exchange, each market's ids 1, 2, 3 ..., one
-- trade every {step_us} microseconds per market, ending at {end_us}; about one id in {hole_every} is
-- missing (a hole for the check to find). Inserted {chunk} at a time from {offset} (memory).
INSERT INTO silver_trades (exchange, symbol, native_symbol, trade_id, price, qty, side, ts, received_at, conn_id, frame_seq)
SELECT
    'binance' AS exchange,
    concat('SYM', toString(number % {symbols:UInt32}), '/USDT') AS symbol,
    concat('SYM', toString(number % {symbols:UInt32}), 'USDT') AS native_symbol,
    intDiv(number, {symbols:UInt32}) + 1 AS trade_id,
    toDecimal128(50000, 18) + toDecimal128(cityHash64(number) % 100000, 18) / 100 AS price,
    toDecimal128(cityHash64(number, 1) % 100000 + 1, 18) / 100000 AS qty,
    if(number % 2 = 0, 'buy', 'sell') AS side,
    fromUnixTimestamp64Micro(toInt64({end_us:Int64} - (intDiv({count:UInt64}, {symbols:UInt32}) - intDiv(number, {symbols:UInt32})) * {step_us:UInt64}), 'UTC') AS ts,
    ts AS received_at,
    'bench' AS conn_id,
    number AS frame_seq
FROM numbers({offset:UInt64}, {chunk:UInt64})
WHERE cityHash64(number) % {hole_every:UInt64} != 0;
