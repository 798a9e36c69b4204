"""Every Prometheus metric ticklake exposes, in one place, on one registry.

A separate registry (not prometheus_client's global one) keeps test processes that build several
apps from colliding, and makes ``/metrics`` show exactly ticklake's series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0)

# --- feed handlers -------------------------------------------------------------------------------
FEED_FRAMES = Counter("ticklake_feed_frames", "WebSocket frames received", ["exchange"], registry=REGISTRY)
FEED_TRADES = Counter("ticklake_feed_trades", "Trades normalized from frames", ["exchange"], registry=REGISTRY)
FEED_PARSE_ERRORS = Counter(
    "ticklake_feed_parse_errors", "Frames that could not be parsed (kept in raw with the error)", ["exchange"],
    registry=REGISTRY,
)
FEED_RECONNECTS = Counter("ticklake_feed_reconnects", "Connection attempts after the first", ["exchange"],
                          registry=REGISTRY)
FEED_CONNECTED = Gauge("ticklake_feed_connected", "Open connections", ["exchange"], registry=REGISTRY)
FEED_LAG = Histogram(
    "ticklake_feed_lag_seconds", "Receive time minus the exchange time of the newest trade, per frame", ["exchange"],
    buckets=_LAG_BUCKETS, registry=REGISTRY,
)

FEED_SYMBOL_TRADES = Counter("ticklake_feed_symbol_trades", "Trades received, per symbol (socket and backfill)",
                             ["exchange", "symbol"], registry=REGISTRY)
FEED_GAPS = Counter("ticklake_feed_gaps", "Gaps detected in a symbol's trade ids", ["exchange", "symbol"],
                    registry=REGISTRY)
FEED_BACKFILLED = Counter("ticklake_feed_trades_backfilled", "Missing trades fetched from the venue's REST API",
                          ["exchange", "symbol"], registry=REGISTRY)
FEED_UNRECOVERABLE = Counter(
    "ticklake_feed_trades_unrecoverable", "Missing trades that could not be fetched (older than the look-back, "
    "or not served by the venue)", ["exchange", "symbol"], registry=REGISTRY,
)
FEED_REST_REQUESTS = Counter("ticklake_feed_rest_requests", "REST requests, by answer status", ["exchange", "status"],
                             registry=REGISTRY)
FEED_SEQUENCE_GAPS = Counter("ticklake_feed_sequence_gaps", "Gaps in a connection's message sequence numbers",
                             ["exchange"], registry=REGISTRY)

# --- bus -----------------------------------------------------------------------------------------
BUS_DEPTH = Gauge("ticklake_bus_depth", "Messages waiting for the slowest subscriber", registry=REGISTRY)
BUS_PRODUCED = Counter("ticklake_bus_produced", "Messages handed to the Kafka producer", ["topic"], registry=REGISTRY)
BUS_DELIVERY_FAILURES = Counter(
    "ticklake_bus_delivery_failures", "Messages the broker did not accept (not retried further)", ["topic", "reason"],
    registry=REGISTRY,
)
BUS_PRODUCER_QUEUE = Gauge("ticklake_bus_producer_queue", "Messages in the producer not yet acknowledged by the broker",
                           registry=REGISTRY)
BUS_CONSUMED = Counter("ticklake_bus_consumed", "Messages read from the broker by the ingester", ["topic"],
                       registry=REGISTRY)
BUS_REJECTED = Counter(
    "ticklake_bus_rejected", "Messages that are not ticklake records, dead-lettered in bus_dead_letters",
    ["topic", "reason"], registry=REGISTRY,
)
BUS_REPLAYED = Counter(
    "ticklake_bus_replayed", "Messages read again after a crash or rebalance and checked against what is stored",
    ["topic"], registry=REGISTRY,
)
BUS_TRUNCATIONS = Counter(
    "ticklake_bus_truncations", "Partitions found shorter than the warehouse had read (the broker lost messages)",
    ["topic"], registry=REGISTRY,
)
BUS_EXPIRED = Counter("ticklake_bus_expired", "Messages that expired on the broker before they were ingested",
                      ["topic"], registry=REGISTRY)
BUS_CONSUMER_LAG = Gauge("ticklake_bus_consumer_lag", "Messages on a partition not yet read by this ingester",
                         ["topic", "partition"], registry=REGISTRY)

# --- warehouse ingest ----------------------------------------------------------------------------
INGEST_ROWS = Counter("ticklake_ingest_rows", "Rows inserted, per table", ["table"], registry=REGISTRY)
INGEST_DUPLICATES = Counter(
    "ticklake_ingest_duplicates", "Trades dropped before bronze because they were already stored", ["exchange"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "ticklake_dead_letters", "Trades that failed validation, per rule", ["exchange", "rule"], registry=REGISTRY
)
INGEST_FLUSH_SECONDS = Histogram(
    "ticklake_ingest_flush_seconds", "Time to write one batch through every layer", buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
INGEST_ERRORS = Counter("ticklake_ingest_errors", "Batches that failed and were retried", registry=REGISTRY)
INGEST_LAST_FLUSH = Gauge("ticklake_ingest_last_flush_timestamp_seconds", "When the last batch was written",
                          registry=REGISTRY)
TRADE_TO_CANDLE = Histogram(
    "ticklake_trade_to_candle_seconds", "Receive time of a trade until its candle is queryable",
    buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)
REPAIRS = Counter("ticklake_repairs", "Rows or windows re-derived by the start-up consistency check",
                  ["layer"], registry=REGISTRY)

# --- API -----------------------------------------------------------------------------------------
API_REQUESTS = Counter("ticklake_api_requests", "HTTP requests", ["route", "status"], registry=REGISTRY)
API_LATENCY = Histogram("ticklake_api_request_seconds", "HTTP request latency", ["route"],
                        buckets=_LATENCY_BUCKETS, registry=REGISTRY)
