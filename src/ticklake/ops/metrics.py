"""Every Prometheus metric ticklake exposes, in one place, on one registry.

A separate registry (not prometheus_client's global one) keeps test processes that build several
apps from colliding, and makes ``/metrics`` show exactly ticklake's series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from .cgroup import MemoryLimitCollector

REGISTRY = CollectorRegistry(auto_describe=True)
# The process itself, in every role (alert rules: restarts, memory near the limit): process_start_time_seconds,
# process_resident_memory_bytes, CPU, open files; and its cgroup's memory limit (ops/cgroup.py).
ProcessCollector(registry=REGISTRY)
REGISTRY.register(MemoryLimitCollector())

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Trade -> candle: finer between 50 ms and 300 ms, where the target (p99 <= 200 ms) is decided, so that
# a quantile read from the buckets (`ticklake soak`, dashboards) says which side of 200 ms it is on.
_TRADE_TO_CANDLE_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0, 2.5,
                            5.0, 10.0, 30.0)
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
FEED_GAPS = Counter("ticklake_feed_gaps", "Gaps detected in a symbol's trade ids; for a venue whose ids are "
                    "global, breaks (reconnects, unreadable frames, sequence jumps) after which its REST trades "
                    "are read back", ["exchange", "symbol"], registry=REGISTRY)
FEED_BACKFILLED = Counter("ticklake_feed_trades_backfilled", "Missing trades fetched from the venue's REST API",
                          ["exchange", "symbol"], registry=REGISTRY)
FEED_UNRECOVERABLE = Counter(
    "ticklake_feed_trades_unrecoverable", "Missing trades that could not be fetched (older than the look-back, "
    "or not served by the venue)", ["exchange", "symbol"], registry=REGISTRY,
)
FEED_BACKFILL_SHORT = Counter(
    "ticklake_feed_backfill_short", "Breaks in a feed whose venue's trade ids are global that REST could not "
    "read back in full: the most recent page did not reach back to the last trade held before the break "
    "(Bybit), or the window since it is older than the venue's REST reach or the look-back, or REST kept "
    "refusing (venues reconciled by time); trades in between may be lost, how many is unknown",
    ["exchange", "symbol"], registry=REGISTRY,
)
FEED_REST_REQUESTS = Counter("ticklake_feed_rest_requests", "REST requests, by answer status", ["exchange", "status"],
                             registry=REGISTRY)
FEED_LAST_FRAME = Gauge(
    "ticklake_feed_last_frame_timestamp_seconds", "When the venue was last heard on its most silent connection: "
    "the oldest, over the feed's connections, of the newest frame each received, of any kind (trades, heartbeats, "
    "WebSocket pings); the feed's start for a connection that has received none. A quiet market still sends "
    "heartbeats: this stops moving only when a venue falls silent", ["exchange"], registry=REGISTRY,
)
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
    buckets=_TRADE_TO_CANDLE_BUCKETS, registry=REGISTRY,
)
REPAIRS = Counter("ticklake_repairs", "Rows or windows re-derived by the start-up consistency check",
                  ["layer"], registry=REGISTRY)

# --- completeness of what is stored (the ingest role's check) -----------------------------------
COMPLETENESS_CHECKS = Counter("ticklake_completeness_checks", "Checks of the stored trade ids for holes, by result "
                              "(ok, failed)", ["result"], registry=REGISTRY)
COMPLETENESS_LAST_CHECK = Gauge("ticklake_completeness_last_check_timestamp_seconds", "When the last successful "
                                "check of the stored trade ids ended", registry=REGISTRY)
COMPLETENESS_MISSING = Gauge(
    "ticklake_completeness_missing_trades", "Trade ids missing from the warehouse within the checked window at the "
    "last check (being filled, or unrecoverable)", ["exchange", "symbol"], registry=REGISTRY,
)
COMPLETENESS_GAPS = Counter("ticklake_completeness_gaps", "Holes found in the stored trade ids and asked of the venue",
                            ["exchange", "symbol"], registry=REGISTRY)
COMPLETENESS_FILLED = Counter("ticklake_completeness_trades_filled", "Trades missing from the warehouse fetched from "
                              "the venue's REST API", ["exchange", "symbol"], registry=REGISTRY)
COMPLETENESS_UNRECOVERABLE = Counter(
    "ticklake_completeness_trades_unrecoverable", "Trades missing from the warehouse that the venue could not serve "
    "(older than the look-back, or not served)", ["exchange", "symbol"], registry=REGISTRY,
)

# --- cold tier (Iceberg) ------------------------------------------------------------------------
LAKE_OFFLOADED_ROWS = Counter("ticklake_lake_offloaded_rows", "Rows (candles for gold) committed to the cold tier",
                              ["table"], registry=REGISTRY)
LAKE_OFFLOAD_COMMITS = Counter("ticklake_lake_offload_commits", "Iceberg commits made by the offloader", ["table"],
                               registry=REGISTRY)
LAKE_OFFLOAD_FAILURES = Counter(
    "ticklake_lake_offload_failures", "Offload runs of a table that failed (retried with backoff)", ["table", "reason"],
    registry=REGISTRY,
)
LAKE_OFFLOAD_LAG = Gauge(
    "ticklake_lake_offload_lag_seconds", "Seconds since the second up to which the cold table holds everything "
    "offloadable (the bound of its last successful run: now - lake.safety_lag_s on the warehouse clock; closed "
    "windows for gold): how far the cold tier is behind", ["table"], registry=REGISTRY,
)
LAKE_LAST_OFFLOAD = Gauge("ticklake_lake_last_offload_timestamp_seconds", "When a table's last successful offload "
                          "run ended", ["table"], registry=REGISTRY)
LAKE_OFFLOAD_SECONDS = Histogram("ticklake_lake_offload_seconds", "Time of one offload run of a table", ["table"],
                                 buckets=_LATENCY_BUCKETS, registry=REGISTRY)

# --- cold tier maintenance ----------------------------------------------------------------------
LAKE_MAINTENANCE_RUNS = Counter(
    "ticklake_lake_maintenance_runs", "Maintenance runs of a cold table: ok, skipped (compaction lost a race with "
    "an offload; retried next run) or failed", ["table", "result"], registry=REGISTRY,
)
LAKE_MAINTENANCE_SECONDS = Histogram("ticklake_lake_maintenance_seconds", "Time of one maintenance run of a table",
                                     ["table"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
LAKE_DATA_FILES = Gauge("ticklake_lake_data_files", "Data files in a cold table's current snapshot after its last "
                        "maintenance", ["table"], registry=REGISTRY)
LAKE_FILES_COMPACTED = Counter("ticklake_lake_files_compacted", "Small data files replaced by compaction",
                               ["table"], registry=REGISTRY)
LAKE_SNAPSHOTS_EXPIRED = Counter("ticklake_lake_snapshots_expired", "Snapshots expired by maintenance", ["table"],
                                 registry=REGISTRY)
LAKE_ORPHANS_REMOVED = Counter("ticklake_lake_orphans_removed", "Unreferenced files deleted by maintenance",
                               ["table"], registry=REGISTRY)
LAKE_LAST_MAINTENANCE = Gauge("ticklake_lake_last_maintenance_timestamp_seconds", "When a table's last successful "
                              "maintenance run ended", ["table"], registry=REGISTRY)

# --- cold tier audit ----------------------------------------------------------------------------
LAKE_AUDIT_MISMATCHED = Gauge(
    "ticklake_lake_audit_mismatched_partitions", "Partitions of a cold table whose rows differ from the warm tier "
    "(count, content or duplicate keys) in the last audit: anything above 0 is data to look at", ["table"],
    registry=REGISTRY,
)
LAKE_AUDIT_ROWS = Gauge("ticklake_lake_audit_rows_checked", "Warm rows of the overlap compared with the cold tier "
                        "in a table's last audit", ["table"], registry=REGISTRY)
LAKE_AUDIT_LAST_RUN = Gauge("ticklake_lake_audit_last_run_timestamp_seconds", "When a table's last completed audit "
                            "ended (a failed audit leaves it unchanged)", ["table"], registry=REGISTRY)
LAKE_AUDIT_FAILURES = Counter("ticklake_lake_audit_failures", "Audits of a cold table that could not complete "
                              "(catalog, object store or warehouse error)", ["table"], registry=REGISTRY)

# --- API -----------------------------------------------------------------------------------------
API_READS_REFUSED = Counter("ticklake_api_reads_refused", "Requests answered 503 before or while reading the "
                            "warehouse: no reading connection free in time (saturated), or a per-query "
                            "limit (time, memory, rows) reached", ["reason"], registry=REGISTRY)
API_CACHE = Counter("ticklake_api_candle_cache", "/v1/ohlcv answers found in (hit) or read past (miss) the "
                    "candle cache", ["result"], registry=REGISTRY)
API_REQUESTS = Counter("ticklake_api_requests", "HTTP requests", ["route", "status"], registry=REGISTRY)
API_LATENCY = Histogram("ticklake_api_request_seconds", "HTTP request latency", ["route"],
                        buckets=_LATENCY_BUCKETS, registry=REGISTRY)
API_AUTH_REFUSED = Counter("ticklake_api_auth_refused", "Requests and stream connections refused by the API key "
                           "check: no key (missing), an unknown or wrong key (invalid), a revoked key, or over the "
                           "key's rate limit (rate_limited)", ["reason"], registry=REGISTRY)

# --- the live stream (api/live.py) ---------------------------------------------------------------
STREAM_SUBSCRIPTIONS = Gauge("ticklake_stream_subscriptions", "Live subscriptions open (WebSocket and "
                             "Server-Sent Events)", ["channel"], registry=REGISTRY)
STREAM_MESSAGES = Counter("ticklake_stream_messages", "Live messages queued to subscribers (one per "
                          "subscriber)", ["type"], registry=REGISTRY)
STREAM_DROPPED = Counter("ticklake_stream_dropped_subscribers", "Subscribers dropped because they did not "
                         "read fast enough (their queue was full)", registry=REGISTRY)
