-- The newest stored trade id per venue market: trades above it are new without a lookup.
SELECT exchange, native_symbol, max(trade_id) AS max_id
FROM bronze_trades
GROUP BY exchange, native_symbol;
