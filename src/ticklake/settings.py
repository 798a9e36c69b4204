"""One typed settings object for every part of ticklake.

Values come, highest priority first, from: keyword arguments, environment variables
(``TICKLAKE_<FIELD>``, nested with ``__``: ``TICKLAKE_API__PORT=9000``), the TOML file named by
``TICKLAKE_CONFIG`` (default ``./ticklake.toml`` when it exists), then the defaults below. The
README documents every field. A broken value fails at start with a message naming the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ticklake.symbols import split_canonical
from ticklake.venues import VENUES


class VenueSettings(BaseModel):
    enabled: bool = True
    symbols: list[str] = Field(default_factory=list)
    # Override the venue's WebSocket and REST base URLs (the simulator sets these to loopback).
    ws_url: str = ""
    rest_url: str = ""

    @field_validator("symbols")
    @classmethod
    def _symbols_are_canonical(cls, value: list[str]) -> list[str]:
        return [("/".join(split_canonical(s))) for s in value]


class _Venues(BaseModel):
    """The ``venues`` table: one ``VenueSettings`` per registered venue (``ticklake.venues``), each
    defaulting to the venue's default symbols. Naming some fields of a venue (say ``ws_url``) keeps
    its default symbols; naming a venue that is not registered is an error."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _venue_defaults(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        unknown = sorted(set(value) - set(VENUES))
        if unknown:
            raise ValueError(f"unknown venue {', '.join(map(repr, unknown))}; known: {', '.join(VENUES)}")
        filled = {}
        for name, given in value.items():
            # A plain VenueSettings sets only what it names; the venue's defaults fill the rest.
            fields = given.model_dump(exclude_unset=True) if isinstance(given, VenueSettings) else given
            if isinstance(fields, dict) and "symbols" not in fields:
                fields = {**fields, "symbols": list(VENUES[name].default_symbols)}
            filled[name] = fields
        return filled

    def enabled(self) -> dict[str, VenueSettings]:
        return {name: venue for name, venue in self if venue.enabled}

    def __getitem__(self, name: str) -> VenueSettings:
        venue: VenueSettings = getattr(self, name)
        return venue


def _venue_default(name: str) -> Any:
    return Field(default_factory=lambda: VenueSettings(symbols=list(VENUES[name].default_symbols)))


# One field per registered venue, made from the registry so that settings name no venue: the
# environment (TICKLAKE_VENUES__BINANCE__SYMBOLS) and TOML ([venues.kraken]) then reach a venue's
# fields exactly as they reach any nested model's. mypy sees the base class (attribute access per
# venue is dynamic: use ``venues[name]``).
if TYPE_CHECKING:
    VenuesSettings = _Venues
else:
    VenuesSettings = create_model("VenuesSettings", __base__=_Venues,
                                  **{name: (VenueSettings, _venue_default(name)) for name in VENUES})


class FeedSettings(BaseModel):
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    # A connection that stayed up this long resets the backoff to its initial value.
    stable_after_s: float = Field(30.0, gt=0)
    connect_timeout_s: float = Field(10.0, gt=0)
    # Gaps (and the downtime before a start) are filled from the venue's REST trades, at most this far back.
    backfill_lookback_s: float = Field(86_400.0, gt=0)
    rest_timeout_s: float = Field(10.0, gt=0)
    # Binance closes every connection at 24 h: replace it before then, overlapping the new one.
    rotate_after_s: float = Field(23 * 3600.0, gt=0)
    # A venue reconciled by time (global trade ids: Bitstamp, Gemini, Bitfinex) re-reads each market's REST
    # trades of the last period this often, catching losses no break shows (one request per market each).
    reconcile_every_s: float = Field(60.0, gt=0)


class RetentionSettings(BaseModel):
    raw_hours: int = Field(48, ge=1)
    bronze_days: int = Field(7, ge=1)
    silver_days: int = Field(30, ge=1)
    dead_letter_days: int = Field(30, ge=1)
    gold_days: int = Field(365, ge=1)
    gold_1d_days: int = Field(730, ge=1)


class ValidationSettings(BaseModel):
    """Rules a bronze trade must pass to reach silver; a failure goes to dead letter with its rule."""

    max_price: str = "1000000000"  # a price above this is absurd for any crypto pair
    max_qty: str = "10000000000"
    max_future_s: float = Field(10.0, ge=0)  # exchange time ahead of receive time
    # Exchange time behind receive time. Must stay below retention.bronze_days: bronze is where a
    # repeated trade is recognized, so a trade older than what bronze keeps could be counted twice.
    max_age_days: float = Field(6.0, gt=0)


class IngestSettings(BaseModel):
    # A batch is written once its oldest message has waited this long, or at once when max_batch_rows
    # are waiting. Every insert costs ~20 ms of CPU through the layers whatever its size, so this sets
    # the platform's cost at low load, and (with the write) the trade-to-candle latency at any load.
    flush_interval_ms: int = Field(100, ge=1, le=60_000)
    max_batch_rows: int = Field(50_000, ge=1)
    bus_queue_size: int = Field(100_000, ge=10)
    # On start, check this far back (from the newest stored frame) that every layer agrees.
    repair_lookback_minutes: int = Field(60, ge=1)


class CompletenessSettings(BaseModel):
    """The check of what the warehouse stored against holes in the trade ids, run by the ingest role
    (warehouse/completeness.py; measured costs in docs/architecture.md)."""

    enabled: bool = True
    interval_s: float = Field(60.0, gt=0)  # how often
    window_s: float = Field(21_600.0, gt=0)  # how far back, by exchange time
    # Trades younger than this are left to the feed's own backfill, which finds most holes first.
    settle_s: float = Field(60.0, ge=0)
    max_missing_per_check: int = Field(100_000, ge=1)  # trade ids one check asks the venues for, at most


class KafkaSettings(BaseModel):
    """The Kafka-API broker of the distributed mode (Redpanda in production)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "ticklake"
    # Ingesters in one group split the partitions between them.
    group_id: str = "ticklake-ingest"
    # Topics are created with these by `ticklake topics`; partitions cap how many ingesters share work.
    partitions: int = Field(6, ge=1, le=10_000)
    replication_factor: int = Field(1, ge=1, le=16)
    compression: str = Field("lz4", pattern=r"^(none|gzip|snappy|lz4|zstd)$")
    linger_ms: float = Field(5.0, ge=0, le=1000)
    # The producer holds at most this many undelivered messages; beyond it the feed handlers wait
    # (back-pressure) instead of growing memory while the broker is away.
    max_buffered_messages: int = Field(100_000, ge=100)
    session_timeout_ms: int = Field(10_000, ge=6000)  # brokers refuse less by default
    # A member that does not come back to the group within this is replaced; an ingester gives up a
    # batch it cannot write within half of it (so it is never still writing when replaced).
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    # Static group membership (group.instance.id): an ingester restarted with the same id takes its
    # partitions back at once, without a rebalance of the whole group. "" = dynamic membership;
    # "hostname" = this machine's (or container's) host name.
    instance_id: str = ""
    # How long the broker keeps messages (topic retention.ms, set by `ticklake topics`): an ingester
    # stopped for longer than this loses what expired. Far above any planned downtime.
    retention_hours: int = Field(168, ge=1)
    # Any other librdkafka property (security.protocol, sasl.*, ssl.*...). Put secrets in the
    # environment (TICKLAKE_BUS__KAFKA__CONFIG='{"sasl.password": "..."}'), never in a committed file.
    config: dict[str, str] = Field(default_factory=dict)


class BusSettings(BaseModel):
    # "embedded": an in-process bus, every role in one process. "kafka": a Kafka-API broker between
    # roles that may run as separate processes (ticklake feed | ingest | api).
    kind: Literal["embedded", "kafka"] = "embedded"
    kafka: KafkaSettings = KafkaSettings()


class MetricsSettings(BaseModel):
    """Where a role without the HTTP API (ticklake feed, ticklake ingest) serves /metrics."""

    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_limit: int = Field(5000, ge=1)
    # Reads from the warehouse run on connections of their own, this many at once (default: half the
    # cores, so that ingestion keeps the rest); a request waits at most read_wait_ms for one, then
    # gets 503 with Retry-After.
    max_concurrent_reads: int = Field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2), ge=1, le=64)
    read_wait_ms: int = Field(500, ge=0, le=60_000)
    retry_after_s: int = Field(1, ge=1, le=3600)
    # What one request's query may cost, at most (one thread each); beyond it, 503 naming the limit.
    query_timeout_s: float = Field(10.0, gt=0, le=3600)
    query_max_memory_bytes: int = Field(268_435_456, ge=10_000_000)
    # The threads that read are this much nicer than the rest of the process (0: as nice as it).
    read_nice: int = Field(19, ge=0, le=19)
    # The share of its time a read slot may spend reading: after a read of t seconds the slot rests
    # t * (1 / share - 1) before the next (1: never rests). Bounds the CPU readers take from ingestion.
    read_duty_cycle: float = Field(0.5, gt=0, le=1)
    # A live-stream client this many messages behind is dropped, told why (api/live.py).
    stream_queue_messages: int = Field(1000, ge=10, le=1_000_000)
    # File exports (CSV, Parquet, Arrow of /v1/trades and /v1/ohlcv) at once, each on a connection of
    # its own beside the read slots (api/export.py); one more waits read_wait_ms, then gets 503.
    max_concurrent_exports: int = Field(1, ge=1, le=16)
    # The key that seals cursors (api/cursor.py). "" = one made on first start in <data_dir>/api_cursor_secret.
    # Give every API process of a fleet the same one (from the environment: TICKLAKE_API__CURSOR_SECRET).
    cursor_secret: SecretStr = SecretStr("")
    # Who may call /v1/* (api/auth.py). "auto": an API key is required when host is not a loopback
    # address (127.0.0.0/8, ::1, localhost); "keys": always (e.g. behind a reverse proxy on the same
    # host, where loopback does not mean private); "none": open to anyone who can reach it (a warning
    # is logged when bound beyond loopback).
    auth: Literal["auto", "keys", "none"] = "auto"
    # The key store (`ticklake keys`): "" = <data_dir>/api_keys.json. Several API processes may share
    # one file; each notices new and revoked keys within about a second.
    keys_file: str = ""
    # The token bucket given to a new key (each key has its own; `ticklake keys create --rate --burst`).
    rate_limit_per_s: float = Field(20.0, gt=0, le=1_000_000)
    rate_limit_burst: int = Field(40, ge=1, le=1_000_000)
    # Origins a browser page may call the API from (CORS), e.g. ["https://dash.example.com"]; none by
    # default. "*" allows any origin.
    cors_origins: list[str] = Field(default_factory=list)


class SimulatorSettings(BaseModel):
    host: str = "127.0.0.1"
    trades_per_second: float = Field(50.0, gt=0)  # per symbol, on average
    seed: int | None = None


class LakeSettings(BaseModel):
    """The Iceberg cold tier (docs/lake.md): a copy of every layer, kept after ClickHouse's retention.

    Lives here, not in ``ticklake.lake``, because shared settings import no layer (tests/test_layering.py).
    """

    # Off: no offload inside `ticklake up` (the cold tier is then only what `ticklake offload` writes).
    enabled: bool = True
    # "sql": the embedded default, a SQLite catalog at <data_dir>/lake/catalog.db and data files under
    # <data_dir>/lake/warehouse. "rest": an Iceberg REST catalog (production: on S3).
    catalog: Literal["sql", "rest"] = "sql"
    uri: str = ""  # the REST catalog's URL; with "sql", an SQLAlchemy URL replacing the SQLite default
    warehouse: str = ""  # "" = file://<data_dir>/lake/warehouse; production: s3://bucket/prefix
    namespace: str = Field("ticklake", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    s3_endpoint: str = ""  # e.g. http://127.0.0.1:8333 (SeaweedFS); "" = AWS
    s3_region: str = "us-east-1"
    # Secrets come from the environment (TICKLAKE_LAKE__S3_SECRET_ACCESS_KEY), never a committed file.
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")
    # The REST catalog's OAuth2 client credentials, "client_id:client_secret". "" = the S3 key pair,
    # which is what SeaweedFS's catalog takes (docs/lake.md, "Production catalog").
    rest_credential: SecretStr = SecretStr("")
    # A call to the catalog or the object store that gets no byte for this long fails, so an offload
    # against a hung store ends with an error instead of waiting forever (S3 calls are tried 3 times).
    io_timeout_s: float = Field(10.0, gt=0, le=300)
    # The issue asks for an offload at least every 15 minutes.
    offload_interval_s: float = Field(300.0, gt=0, le=900)
    # Rows are offloaded by stored_at (set by ClickHouse at insert, whole seconds) up to now() minus
    # this lag, so that no insert still in flight can later appear below the watermark. At least 2 s:
    # the current second is never complete (docs/lake.md, "The watermark").
    safety_lag_s: int = Field(60, ge=2, le=3600)
    # A backlog (first start, a long stop) is offloaded in commits of about this many rows.
    max_rows_per_commit: int = Field(500_000, ge=1)
    # A table whose offload failed is retried after this, doubling up to offload_interval_s.
    retry_initial_s: float = Field(5.0, gt=0)
    # Maintenance (ticklake.lake.maintain, `ticklake maintain`; docs/lake.md, "Maintenance").
    # A partition's data files smaller than this are rewritten together into sorted files of about this
    # size. A group is sorted in memory: about 450 MB per million trades (measured: 1M synthetic trades
    # in 36 MB of Parquet, +465 MB peak); 32 MB of real trades is 1-2.5M of them.
    compaction_target_file_mb: int = Field(32, ge=1, le=512)
    # Snapshots (time travel, readers still planning on an older one) are kept this long, and at least
    # min_snapshots of them; the files only expired snapshots used are then removed as orphans.
    snapshot_retention_days: float = Field(7.0, ge=1)
    min_snapshots: int = Field(5, ge=1)
    # An unreferenced file is deleted only once this old: a commit in flight has written files that no
    # metadata references yet.
    orphan_min_age_hours: float = Field(72.0, ge=1)
    # Maintenance (compaction, snapshot expiry, orphan removal) and then the warm-vs-cold audit run this
    # often inside `ticklake up` / `ticklake offload` (daily: compaction rewrites a day's small files);
    # the time of the last run is a table property, so restarts do not postpone it.
    maintenance_interval_hours: float = Field(24.0, gt=0)
    # Where the platform runs those jobs (ticklake.lake.worker): "process", a worker process started
    # when a job is due and stopped after worker_idle_s without one, so that their memory (Arrow,
    # pyiceberg) leaves with it; "thread", the platform's own lake thread.
    worker: Literal["process", "thread"] = "process"
    worker_idle_s: float = Field(10.0, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TICKLAKE_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Path("data")
    # "" means the embedded default: chdb://<data_dir>/clickhouse. A server: http://user@host:8123
    warehouse_url: str = ""
    database: str = Field("ticklake", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # Embedded ClickHouse may take up to 90 % of RAM by default: cap it.
    warehouse_max_memory_bytes: int = Field(1_000_000_000, ge=100_000_000)
    # Embedded only, opt-in: the engine's code that ran at start and not since leaves the process's
    # resident memory now and then (~100-130 MB of RSS; ops/code_pages.py). Off by default: with it on,
    # a platform on a CPU-starved host fell behind in a test (docs/architecture.md, "Memory").
    warehouse_release_code_pages: bool = False
    venues: VenuesSettings = Field(default_factory=VenuesSettings)
    feed: FeedSettings = FeedSettings()
    retention: RetentionSettings = RetentionSettings()
    validation: ValidationSettings = ValidationSettings()
    ingest: IngestSettings = IngestSettings()
    completeness: CompletenessSettings = CompletenessSettings()
    bus: BusSettings = BusSettings()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    lake: LakeSettings = LakeSettings()
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    @model_validator(mode="after")
    def _dedup_horizon(self) -> Settings:
        if self.feed.backfill_lookback_s >= self.validation.max_age_days * 86_400:
            raise ValueError(
                f"feed.backfill_lookback_s ({self.feed.backfill_lookback_s:g}) must be below validation.max_age_days "
                f"({self.validation.max_age_days:g} days): older backfilled trades would be rejected as stale"
            )
        if self.validation.max_age_days >= self.retention.bronze_days:
            raise ValueError(
                f"validation.max_age_days ({self.validation.max_age_days:g}) must be below retention.bronze_days "
                f"({self.retention.bronze_days}): bronze is where repeated trades are recognized"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = config_path()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def resolved_warehouse_url(self) -> str:
        if self.warehouse_url:
            return self.warehouse_url
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the field and the reason."""


def config_path() -> Path | None:
    named = os.environ.get("TICKLAKE_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"TICKLAKE_CONFIG names {path}, which is not a file")
        return path
    default = Path("ticklake.toml")
    return default if default.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning any validation failure into one readable ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
    except ValueError as exc:  # a TOML syntax error surfaces as a ValueError subclass
        raise ConfigError(f"invalid configuration file: {exc}") from None
