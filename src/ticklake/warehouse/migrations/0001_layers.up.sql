-- ticklake warehouse, version 1: the four layers of the warm tier.
-- Retention (TTL) is applied at every start from settings by queries/retention.sql. It counts from
-- stored_at, when ticklake stored a row, so a replayed old recording is kept as long as live data.
-- Every DateTime declares 'UTC'. Tables that take retried batches keep a deduplication window
-- so that a batch re-sent with the same insert_deduplication_token is stored once (stack.md, pitfall 1).

-- raw: every frame exactly as received, so any layer can be re-derived from it. A frame stored twice
-- (a replayed recording, a retried batch) collapses to one row at merge time; nothing derives from raw
-- through a view, so a transient copy cannot double-count anything.
CREATE TABLE IF NOT EXISTS raw_frames
(
    exchange     LowCardinality(String),
    conn_id      String,
    frame_seq    UInt64,
    received_at  DateTime64(6, 'UTC'),
    payload      String CODEC(ZSTD(3)),
    error        String,
    trade_count  UInt32,
    stored_at    DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (exchange, received_at, conn_id, frame_seq)
SETTINGS non_replicated_deduplication_window = 1000;

-- bronze: one row per trade in the venue's own terms (native symbol, price and quantity text).
-- Deduplicated before insert; the ReplacingMergeTree key is a backstop, not the mechanism.
CREATE TABLE IF NOT EXISTS bronze_trades
(
    exchange       LowCardinality(String),
    native_symbol  LowCardinality(String),
    symbol         LowCardinality(String),
    trade_id       UInt64,
    price          String,
    qty            String,
    side           Enum8('unknown' = 0, 'buy' = 1, 'sell' = 2),
    ts             DateTime64(6, 'UTC'),
    received_at    DateTime64(6, 'UTC'),
    conn_id        String,
    frame_seq      UInt64,
    stored_at      DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (exchange, native_symbol, trade_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- silver: validated trades with canonical symbols and exact decimals.
CREATE TABLE IF NOT EXISTS silver_trades
(
    exchange       LowCardinality(String),
    symbol         LowCardinality(String),
    native_symbol  LowCardinality(String),
    trade_id       UInt64,
    price          Decimal(38, 18),
    qty            Decimal(38, 18),
    side           Enum8('unknown' = 0, 'buy' = 1, 'sell' = 2),
    ts             DateTime64(6, 'UTC'),
    received_at    DateTime64(6, 'UTC'),
    conn_id        String,
    frame_seq      UInt64,
    stored_at      DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (exchange, symbol, ts, trade_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- dead letters: trades that failed validation, with the rule they broke and their raw frame.
CREATE TABLE IF NOT EXISTS dead_letters
(
    exchange       LowCardinality(String),
    native_symbol  String,
    symbol         String,
    trade_id       UInt64,
    price          String,
    qty            String,
    side           Enum8('unknown' = 0, 'buy' = 1, 'sell' = 2),
    ts             DateTime64(6, 'UTC'),
    received_at    DateTime64(6, 'UTC'),
    rule           LowCardinality(String),
    detail         String,
    conn_id        String,
    frame_seq      UInt64,
    raw_frame      String CODEC(ZSTD(3)),
    stored_at      DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (exchange, native_symbol, trade_id, rule)
SETTINGS non_replicated_deduplication_window = 1000;

-- gold: OHLCV for six timeframes in one table, kept as aggregate states.
-- open/close break ties on equal timestamps by trade id (stack.md, pitfall 3); quote volume is
-- summed exactly at 36 decimals; updated_at is when the candle last changed, which retention uses.
CREATE TABLE IF NOT EXISTS gold_ohlcv
(
    exchange      LowCardinality(String),
    symbol        LowCardinality(String),
    timeframe     UInt32,
    bucket        DateTime('UTC'),
    open          AggregateFunction(argMin, Decimal(38, 18), Tuple(DateTime64(6, 'UTC'), UInt64)),
    high          AggregateFunction(max, Decimal(38, 18)),
    low           AggregateFunction(min, Decimal(38, 18)),
    close         AggregateFunction(argMax, Decimal(38, 18), Tuple(DateTime64(6, 'UTC'), UInt64)),
    volume        AggregateFunction(sum, Decimal(38, 18)),
    quote_volume  AggregateFunction(sum, Decimal(76, 36)),
    buy_volume    AggregateFunction(sum, Decimal(38, 18)),
    trades        AggregateFunction(count),
    updated_at    SimpleAggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (exchange, symbol, timeframe, bucket)
SETTINGS non_replicated_deduplication_window = 1000;

-- One view feeds all six timeframes: a single view fires once per insert, where six views cost six
-- times the work and could be interrupted between them (stack.md, pitfall 2). Buckets are aligned to
-- the Unix epoch, so 1d candles start at 00:00 UTC.
CREATE MATERIALIZED VIEW IF NOT EXISTS gold_ohlcv_mv TO gold_ohlcv AS
SELECT
    exchange,
    symbol,
    timeframe,
    toDateTime(intDiv(toUnixTimestamp(ts), timeframe) * timeframe, 'UTC') AS bucket,
    argMinState(price, (ts, trade_id)) AS open,
    maxState(price) AS high,
    minState(price) AS low,
    argMaxState(price, (ts, trade_id)) AS close,
    sumState(qty) AS volume,
    sumState(toDecimal256(price, 18) * qty) AS quote_volume,
    sumState(if(side = 'buy', qty, toDecimal128(0, 18))) AS buy_volume,
    countState() AS trades,
    max(now()) AS updated_at
FROM silver_trades
ARRAY JOIN [60, 300, 900, 1800, 3600, 86400] AS timeframe
GROUP BY exchange, symbol, timeframe, bucket;
