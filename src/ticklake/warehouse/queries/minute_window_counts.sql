-- Trades per one-minute window in silver and in gold, for the configured exchanges' markets over
-- whole minutes [since, until): the completeness check's look for gold windows a crash left short
-- (the view fires inside the silver insert; stack.md, pitfall 2). One view writes all six timeframes
-- in one insert, so a batch is in all of them or in none: the minutes tell.
-- Each bound is bound in its column's type (the same moments: since = since_bucket, until = until_bucket).
-- ts as DateTime64: compared with a DateTime bound, ClickHouse's index
-- analysis rounds a granule's first ts (…:59.996 -> the next second) and drops the granule
-- (docs/architecture.md, D6; tests/warehouse/test_completeness.py).
SELECT exchange, symbol, bucket, sum(silver) AS silver, sum(gold) AS gold
FROM (
    SELECT CAST(exchange AS String) AS exchange, CAST(symbol AS String) AS symbol, toStartOfMinute(ts) AS bucket,
           count() AS silver, toUInt64(0) AS gold
    FROM silver_trades FINAL
    WHERE exchange IN {exchanges:Array(String)}
      AND ts >= {since:DateTime64(6, 'UTC')} AND ts < {until:DateTime64(6, 'UTC')}
    GROUP BY exchange, symbol, bucket
    UNION ALL
    SELECT CAST(exchange AS String) AS exchange, CAST(symbol AS String) AS symbol, bucket,
           toUInt64(0) AS silver, countMerge(trades) AS gold
    FROM gold_ohlcv
    WHERE timeframe = 60 AND exchange IN {exchanges:Array(String)}
      AND bucket >= {since_bucket:DateTime('UTC')} AND bucket < {until_bucket:DateTime('UTC')}
    GROUP BY exchange, symbol, bucket
)
GROUP BY exchange, symbol, bucket
HAVING silver != gold;
