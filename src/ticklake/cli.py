"""The ``ticklake`` command line.

    ticklake up [--simulate] [--record FILE] [--roles feed,ingest,api,offload]
                                               run the platform (every role, or those named) in one process
    ticklake feed [--simulate]                 only the feed handlers (needs bus.kind = "kafka")
    ticklake ingest [--api]                    only the ingester (and the API, for an embedded warehouse)
    ticklake api                               only the HTTP API: serves the warehouse, connects to no venue
    ticklake topics                            create the Kafka topics (idempotent) and list them
    ticklake offload [--once] [--table NAME]   copy the warehouse to the Iceberg cold tier (on a schedule, or once)
    ticklake maintain [--table NAME]           compact the cold tier, expire snapshots, remove orphan files
    ticklake record FILE [--simulate] [--seconds N]
    ticklake replay FILE [FILE ...]            recorded sessions (ticklake's or cryptofeed's) through the pipeline
    ticklake migrate [--to VERSION] [--status] the warehouse schema
    ticklake repair [--lookback-minutes N]     check that every layer agrees; re-derive what is missing
    ticklake audit [--table NAME]              compare the cold tier with the warm tier (exit 1 on any mismatch)
    ticklake rederive --layer L --from {warm,cold} --start DAY --end DAY [--exchange X] [--symbol S] [--dry-run]
                                               rebuild a warm layer for whole UTC days from the layer below
    ticklake simulate                          only the local exchange simulator
    ticklake bench [--quick] [--stages S,...]  the benchmark (prints figures)
    ticklake drill [--modes M,...] [--quick] [--json PATH]
                                               the failure modes against a local deployment, measured
    ticklake soak [--quick] [--duration S] [--loads 50,250,500] [--out DIR]
                                               the platform at steady loads for long: CSV, chart, verdicts
    ticklake config                            the effective settings
    ticklake keys create [--name N] [--rate R] [--burst B] | list | revoke ID
                                               API keys (asked for beyond loopback: api.auth)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from ticklake.settings import ConfigError, Settings, load_settings

log = logging.getLogger("ticklake")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    # Both log every failed request to a server with a traceback, before ticklake says in one line what
    # failed and what to check; their retries are not news.
    for noisy in ("urllib3.connectionpool", "clickhouse_connect.driver._backend.http_sync"):
        logging.getLogger(noisy).setLevel(max(logging.ERROR, logging.getLogger().level))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ticklake", description="Crypto trades to exact candles, self-hosted.")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run feeds, warehouse, API and offloader in one process")
    up.add_argument("--simulate", action="store_true", help="connect to local simulated exchanges on loopback")
    up.add_argument("--record", type=Path, metavar="FILE", help="also record every frame to FILE")
    up.add_argument("--roles", default=None, help="comma-separated roles to run: feed, ingest, api, offload (default: "
                    "all; offload only when lake.enabled)")

    feed = commands.add_parser("feed", help="run the feed handlers only, publishing to the Kafka bus")
    feed.add_argument("--simulate", action="store_true", help="connect to local simulated exchanges on loopback")
    feed.add_argument("--record", type=Path, metavar="FILE", help="also record every frame to FILE")
    ingest = commands.add_parser("ingest", help="run a consumer-group ingester: Kafka bus -> warehouse")
    ingest.add_argument("--api", action="store_true",
                        help="serve the API from this process too (needed with the embedded warehouse)")
    commands.add_parser("api", help="run the HTTP API only: serve what the warehouse holds, connect to no venue")
    commands.add_parser("topics", help="create the Kafka topics of the enabled venues (idempotent)")
    offload = commands.add_parser("offload", help="offload the warehouse to the Iceberg cold tier, every "
                                  "lake.offload_interval_s (or once, for cron)")
    offload.add_argument("--once", action="store_true", help="offload every table once, then exit (1 if one failed)")
    offload.add_argument("--table", action="append", default=None, metavar="NAME",
                         help="only this cold table (repeatable; default: all)")
    maintain = commands.add_parser("maintain", help="maintain the Iceberg cold tier once: compaction, snapshot "
                                   "expiry, orphan-file removal, then the warm-vs-cold audit (what the offloader "
                                   "runs daily); exit 1 if a table failed or differs")
    maintain.add_argument("--table", action="append", default=None, metavar="NAME",
                          help="only this cold table (repeatable; default: all)")
    maintain.add_argument("--no-audit", action="store_true",
                          help="skip the audit (it opens the warehouse; maintenance needs only the catalog)")

    record = commands.add_parser("record", help="record raw WebSocket sessions to a file (no warehouse)")
    record.add_argument("file", type=Path)
    record.add_argument("--simulate", action="store_true")
    record.add_argument("--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)")

    replay = commands.add_parser("replay", help="replay recorded sessions through the pipeline")
    replay.add_argument("files", type=Path, nargs="+")

    mig = commands.add_parser("migrate", help="apply or roll back warehouse migrations")
    mig.add_argument("--to", type=int, default=None, metavar="VERSION", help="target version (0 = none)")
    mig.add_argument("--status", action="store_true", help="only show applied and available versions")

    rep = commands.add_parser("repair", help="check every layer against the one below and re-derive gaps")
    rep.add_argument("--lookback-minutes", type=int, default=None)

    aud = commands.add_parser("audit", help="compare the cold tier with the warm tier where both hold rows: counts "
                              "and content per partition; exit 1 on any mismatch")
    aud.add_argument("--table", action="append", default=None, metavar="NAME",
                     help="only this cold table (repeatable; default: all)")

    red = commands.add_parser(
        "rederive", help="rebuild a warm layer for whole UTC days from the layer below, warm or cold",
        description="silver: bronze validated again with the current rules (dead letters and gold follow); gold: "
                    "candles computed again from silver; bronze: warm bronze reloaded from cold. The cold tier's "
                    "copy of the range is replaced too (docs/lake.md, Re-derivation).")
    red.add_argument("--layer", required=True, choices=("silver", "gold", "bronze"))
    red.add_argument("--from", dest="source", required=True, choices=("warm", "cold"),
                     help="read the layer below from the warm tier (ClickHouse) or the cold tier (Iceberg)")
    red.add_argument("--start", required=True, metavar="DAY", help="first UTC day, e.g. 2026-01-01")
    red.add_argument("--end", required=True, metavar="DAY", help="UTC day after the last one (excluded)")
    red.add_argument("--exchange", default="", help="only this exchange (default: every one)")
    red.add_argument("--symbol", default="", help="only this canonical symbol, e.g. BTC/USDT (default: every one)")
    red.add_argument("--dry-run", action="store_true", help="run the checks and report what would change")

    simulate = commands.add_parser("simulate", help="run only the local exchange simulator",
                                   description="Options: --host, --port, --seed, --trades-per-second.")
    simulate.add_argument("options", nargs=argparse.REMAINDER, help="passed to the simulator")

    bench = commands.add_parser("bench", help="run the benchmark and print figures")
    bench.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    bench.add_argument("--stages", default="", help="comma-separated stages to run (default: all): normalize, "
                       "handlers, ingest, latency, serving, bus, cold_tier, completeness, platform, stream, export, "
                       "segments")

    soak = commands.add_parser("soak", help="run the platform at 1x, 5x, 10x the planned load and beyond; write a "
                               "CSV and a chart of CPU, RSS, latency and backlog; exit 1 on a missed criterion")
    soak.add_argument("--quick", action="store_true", help="1-minute steps sampled every 2 s (default: 10 minutes, "
                      "5 s)")
    soak.add_argument("--duration", type=float, default=None, metavar="S", help="seconds per planned load step")
    soak.add_argument("--interval", type=float, default=None, metavar="S", help="seconds between samples")
    soak.add_argument("--loads", default="50,250,500", help="planned loads, total trades/s (default: 50,250,500)")
    soak.add_argument("--no-beyond", dest="beyond", action="store_false",
                      help="stop after the planned loads (default: double the load until the platform falls behind)")
    soak.add_argument("--beyond-duration", type=float, default=None, metavar="S",
                      help="seconds per step beyond the planned loads (default: --duration)")
    soak.add_argument("--max-load", type=float, default=64_000.0, metavar="N", help="never ask more trades/s")
    soak.add_argument("--out", type=Path, default=None, metavar="DIR", help="where the files go (default: "
                      "./soak-<UTC time>)")

    _drill_parser(commands)

    commands.add_parser("config", help="print the effective settings as JSON")

    keys = commands.add_parser("keys", help="API keys: create (shown once), list, revoke",
                               description="Keys are kept hashed in api.keys_file (default <data_dir>/api_keys.json); "
                                           "a running API sees a new or revoked key within about a second.")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it (once: only its hash is kept)")
    create.add_argument("--name", default="", help="what the key is for, e.g. the client's name")
    create.add_argument("--rate", type=float, default=None, metavar="R",
                        help="requests per second, on average (default: api.rate_limit_per_s)")
    create.add_argument("--burst", type=int, default=None, metavar="B",
                        help="requests at once, beyond the rate (default: api.rate_limit_burst)")
    key_commands.add_parser("list", help="every key: id, name, created, revoked, limits (never the key)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by id: refused from then on")
    revoke.add_argument("id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TZ", "UTC")
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"ticklake: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)
    try:
        return _dispatch(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from ticklake.platform import WarehouseInUseError
        from ticklake.warehouse.client import WarehouseUnreachableError
        from ticklake.warehouse.migrate import MigrationError

        if isinstance(exc, WarehouseInUseError | MigrationError | WarehouseUnreachableError):
            print(f"ticklake: {exc}", file=sys.stderr)
            return 1
        if isinstance(exc, ConfigError):  # e.g. an API beyond loopback without keys (api/auth.py)
            print(f"ticklake: {exc}", file=sys.stderr)
            return 2
        raise


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    command: str = args.command
    if command == "up":
        roles = frozenset(r.strip() for r in args.roles.split(",")) if args.roles else None
        return _up(settings, args.simulate, args.record, roles)
    if command == "feed":
        return _up(settings, args.simulate, args.record, frozenset({"feed"}))
    if command == "ingest":
        return _up(settings, False, None, frozenset({"ingest", "api"} if args.api else {"ingest"}))
    if command == "api":
        return _up(settings, False, None, frozenset({"api"}))
    if command == "topics":
        return _topics(settings)
    if command == "offload":
        if args.once:
            return _offload_once(settings, args.table)
        if args.table:
            print("ticklake: --table needs --once (the scheduled offloader runs every table)", file=sys.stderr)
            return 2
        return _up(settings, False, None, frozenset({"offload"}))
    if command == "maintain":
        maintained = _maintain(settings, args.table)
        if maintained == 2 or args.no_audit:
            return maintained
        return max(maintained, _audit(settings, args.table))
    if command == "record":
        from ticklake.replay import record

        asyncio.run(record(settings, args.file, args.simulate, args.seconds))
        return 0
    if command == "replay":
        from ticklake.replay import replay

        summary = asyncio.run(replay(settings, args.files))
        print(json.dumps(summary, indent=2))
        return 0
    if command == "migrate":
        return _migrate(settings, args.to, args.status)
    if command == "repair":
        return _repair(settings, args.lookback_minutes)
    if command == "audit":
        return _audit(settings, args.table)
    if command == "rederive":
        return _rederive(settings, args)
    if command == "simulate":
        from ticklake.simulator.__main__ import main as simulate

        simulate(args.options)
        return 0
    if command == "bench":
        from ticklake.bench import STAGES, run_bench

        chosen = frozenset(s.strip() for s in args.stages.split(",") if s.strip()) or frozenset(STAGES)
        unknown = chosen - set(STAGES)
        if unknown:
            print(f"ticklake bench: unknown stages {', '.join(sorted(unknown))}; choose from {', '.join(STAGES)}",
                  file=sys.stderr)
            return 2
        return int(run_bench(settings, quick=args.quick, stages=chosen))
    if command == "drill":
        return _drill(args)
    if command == "soak":
        from ticklake.bench.soak import SoakError, options_from_args, run_soak

        try:
            return run_soak(options_from_args(args.loads, args.duration, args.interval, args.quick, args.out,
                                              args.beyond, args.beyond_duration, args.max_load))
        except SoakError as exc:
            print(f"ticklake soak: {exc}", file=sys.stderr)
            return 2
    if command == "keys":
        return _keys(settings, args)
    if command == "config":
        from ticklake.ops.redact import masked

        print(json.dumps(masked(settings.model_dump(mode="json")), indent=2))
        return 0
    raise AssertionError(command)


def _drill_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ticklake.drill import MODE_NAMES

    drill = commands.add_parser(
        "drill", help="run the failure modes against a local deployment on loopback and print a table",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Start a local deployment on loopback (simulated venues behind TCP proxies, a noida-db "
                    "broker,\n`ticklake feed`, `ticklake up --roles ingest,api,offload`, SeaweedFS), run each failure "
                    "mode, and print per mode:\n"
                    "  detect       from the fault to ticklake showing it (/health or an alert's metric, named)\n"
                    "  down         until the killed role answers again, or the outage ends\n"
                    "  stored       from the kill, or the outage's end, until every market has a newer trade\n"
                    "               committed in the warehouse (read from it after the run)\n"
                    "  MTTR         the same as the API shows it (target < 30 s)\n"
                    "  backfilled   until every trade the venues' tapes hold up to the fault's end is stored\n"
                    "  lost, duplicated (against the tapes), candles differing from a recomputation from the\n"
                    "               stored trades, duplicate rows in the cold tier: all must be 0\n"
                    "Exit status 1 if a mode misses a target or a final check (ticklake audit...) fails; 2 if the\n"
                    "broker or SeaweedFS is not installed (pip install -e '.[drill]'). See docs/operations.md.")
    drill.add_argument("--modes", default="", help=f"comma-separated modes (default: all): {', '.join(MODE_NAMES)}")
    drill.add_argument("--quick", action="store_true",
                       help="shorter outages (object store 20 s, partition 15 s instead of 60 and 30) and a "
                            "faster completeness check, for CI; the table says so")
    drill.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    drill.add_argument("--workdir", type=Path, metavar="DIR",
                       help="where the deployment keeps its data and logs (default: a temporary directory, "
                            "removed after a passing run)")


def _drill(args: argparse.Namespace) -> int:
    from ticklake.drill import MODE_NAMES
    from ticklake.drill.run import run_drill

    chosen = [m.strip() for m in args.modes.split(",") if m.strip()] or list(MODE_NAMES)
    unknown = sorted(set(chosen) - set(MODE_NAMES))
    if unknown:
        print(f"ticklake drill: unknown modes {', '.join(unknown)}; choose from {', '.join(MODE_NAMES)}",
              file=sys.stderr)
        return 2
    return run_drill(chosen, args.quick, args.json, args.workdir)


def _up(settings: Settings, simulate: bool, record_path: Path | None, roles: frozenset[str] | None) -> int:
    from ticklake.platform import Platform, RolesError, check_roles, default_roles
    from ticklake.replay import open_recorder

    roles = default_roles(settings) if roles is None else roles
    try:
        check_roles(settings, roles)
    except RolesError as exc:
        print(f"ticklake: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        recorder = open_recorder(record_path) if record_path else None
        simulator = None
        try:
            venue_settings = settings
            if simulate and "feed" in roles:
                # The simulated venues run beside the platform, which only gets their URLs: the
                # platform itself never depends on the simulator.
                from ticklake.simulator.server import Simulator

                simulator = Simulator.from_settings(settings)
                await simulator.start()
                venue_settings = simulator.settings_for(settings)
                log.info("simulated exchanges on loopback: %s", simulator.ws_urls)
            platform = Platform(venue_settings, recorder=recorder, roles=roles)
            await platform.run_until_signalled()
            return platform.exit_code
        finally:
            if simulator is not None:
                await simulator.close()  # after the platform: its feeds close their connections first
            if recorder is not None:
                recorder.close()

    return asyncio.run(run())


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from ticklake.api.keys import KeyStore, UnknownKeyError, keys_path

    store = KeyStore(keys_path(settings.api.keys_file, settings.data_dir))
    if args.keys_command == "create":
        rate = settings.api.rate_limit_per_s if args.rate is None else args.rate
        burst = settings.api.rate_limit_burst if args.burst is None else args.burst
        if rate <= 0 or burst < 1:
            print("ticklake: --rate must be above 0 and --burst at least 1", file=sys.stderr)
            return 2
        key, stored = store.create(args.name, rate, burst)
        print(key)
        print(f"id {stored.id}, {rate:g} requests/s, bursts of {burst}, in {store.path}.\nThis key is not "
              "stored and cannot be shown again: keep it now. Revoke it with `ticklake keys revoke "
              f"{stored.id}`.", file=sys.stderr)
        return 0
    if args.keys_command == "list":
        keys = store.keys()
        if not keys:
            print(f"no API keys in {store.path} (create one with `ticklake keys create`)", file=sys.stderr)
        for k in keys:
            state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
            print(f"{k.id}  {k.name or '-'}  created {k.created_at}  {state}  {k.rate_per_s:g}/s burst {k.burst}")
        return 0
    try:
        revoked = store.revoke(args.id)
    except UnknownKeyError:
        print(f"ticklake: no API key with id {args.id!r} in {store.path} (see `ticklake keys list`)", file=sys.stderr)
        return 1
    print(f"revoked {revoked.id} ({revoked.name or 'no name'}) at {revoked.revoked_at}")
    return 0


def _topics(settings: Settings) -> int:
    if settings.bus.kind != "kafka":
        print("ticklake: the embedded bus has no topics; set bus.kind = \"kafka\" (TICKLAKE_BUS__KIND=kafka)",
              file=sys.stderr)
        return 2
    from confluent_kafka import KafkaException

    from ticklake.bus.kafka import create_topics

    hours = settings.bus.kafka.retention_hours
    try:
        statuses = create_topics(settings.bus.kafka, settings.venues.enabled(), hours)
    except KafkaException as exc:
        print(f"ticklake: cannot create topics on {settings.bus.kafka.bootstrap_servers}: {exc}", file=sys.stderr)
        return 1
    for status in statuses:
        print(f"{status.topic}: {status.status}, {status.partitions} partitions")
    return 0


def _offload_once(settings: Settings, names: list[str] | None) -> int:
    from functools import partial

    from ticklake.lake.catalog import open_catalog
    from ticklake.lake.offloader import Offloader
    from ticklake.lake.tables import TABLES
    from ticklake.platform import open_warehouse

    unknown = sorted(set(names or ()) - set(TABLES))
    if unknown:
        print(f"ticklake: unknown cold tables {unknown}: choose from {', '.join(TABLES)}", file=sys.stderr)
        return 2
    client = open_warehouse(settings)
    offloader = Offloader(settings, client, partial(open_catalog, settings.lake, settings.data_dir),
                          tables=[name for name in TABLES if not names or name in names])
    try:
        results = asyncio.run(offloader.run_once())
    finally:
        offloader.close()
        client.close()
    for result in results:
        outcome = f"FAILED: {result.error}" if result.error else f"{result.rows} rows in {result.commits} commits"
        print(f"{result.table}: {outcome} ({result.seconds:.1f} s)")
    return 1 if any(result.error for result in results) else 0


def _maintain(settings: Settings, names: list[str] | None) -> int:
    from ticklake.lake.catalog import open_catalog
    from ticklake.lake.maintain import maintain
    from ticklake.lake.tables import TABLES

    unknown = sorted(set(names or ()) - set(TABLES))
    if unknown:
        print(f"ticklake: unknown cold tables {unknown}: choose from {', '.join(TABLES)}", file=sys.stderr)
        return 2
    try:
        catalog = open_catalog(settings.lake, settings.data_dir)
    except Exception as exc:  # a REST catalog down, a bad URI: say which, without a traceback
        print(f"ticklake: cannot open the lake catalog: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    results = maintain(catalog, settings.lake, names)
    for result in results:
        if result.error:
            outcome = f"FAILED: {result.error}"
        elif result.missing:
            outcome = "no table yet (nothing offloaded)"
        else:
            compaction = ("compaction skipped (an offload committed meanwhile; retried next run)"
                          if result.compaction_skipped else
                          f"{result.files_before} -> {result.files_after} data files ({result.files_rewritten} "
                          "rewritten)")
            outcome = (f"{compaction}, {result.snapshots_expired} snapshots expired, {result.orphans_removed} "
                       "orphan files removed")
        print(f"{result.table}: {outcome} ({result.seconds:.1f} s)")
    return 1 if any(result.error for result in results) else 0


def _migrate(settings: Settings, target: int | None, status_only: bool) -> int:
    from ticklake.platform import connect_warehouse
    from ticklake.warehouse import migrate

    client = connect_warehouse(settings)
    try:
        if not status_only:
            current = max(migrate.applied(client), default=0)
            if target is not None and target < current:
                print(f"rolled back: {migrate.downgrade(client, target)}")
            else:
                print(f"applied: {migrate.upgrade(client, target)}")
        applied = migrate.applied(client)
        for migration in migrate.available():
            state = "applied" if migration.version in applied else "pending"
            print(f"{migration.version:04d}_{migration.name}: {state}")
    finally:
        client.close()
    return 0


def _audit(settings: Settings, names: list[str] | None) -> int:
    from ticklake.lake.audit import audit, exit_code, report
    from ticklake.lake.catalog import open_catalog
    from ticklake.lake.results import record
    from ticklake.lake.tables import TABLES
    from ticklake.platform import open_warehouse

    unknown = sorted(set(names or ()) - set(TABLES))
    if unknown:
        print(f"ticklake: unknown cold tables {unknown}: choose from {', '.join(TABLES)}", file=sys.stderr)
        return 2
    client = open_warehouse(settings)
    try:
        try:
            catalog = open_catalog(settings.lake, settings.data_dir)
        except Exception as exc:  # a REST catalog that does not answer: a clear error, not a traceback
            print(f"ticklake: cannot open the lake catalog ({settings.lake.catalog}): {exc}", file=sys.stderr)
            return 1
        results = audit(client, catalog, settings, [TABLES[name] for name in names] if names else None)
        record(client, results)
    finally:
        client.close()
    for line in report(results):
        print(line)
    return exit_code(results)


def _repair(settings: Settings, lookback_minutes: int | None) -> int:
    from ticklake.platform import open_warehouse, subscribed_natives
    from ticklake.warehouse.repair import repair
    from ticklake.warehouse.writer import WarehouseWriter

    client = open_warehouse(settings)
    try:
        minutes = lookback_minutes or settings.ingest.repair_lookback_minutes
        report = repair(WarehouseWriter(client, settings.validation), timedelta(minutes=minutes),
                        subscribed_natives(settings))
        print(json.dumps(report))
    finally:
        client.close()
    return 0


def _rederive(settings: Settings, args: argparse.Namespace) -> int:
    from ticklake.lake.rederive import RederiveError, cold_catalog, make_scope, rederive

    try:
        scope = make_scope(args.layer, args.source, args.start, args.end, args.exchange, args.symbol)
        catalog = cold_catalog(settings, scope.source)
    except RederiveError as exc:
        print(f"ticklake: {exc}", file=sys.stderr)
        return 2
    from ticklake.platform import open_warehouse

    client = open_warehouse(settings)
    try:
        report = rederive(client, catalog, settings.lake.namespace, scope, settings.validation, dry_run=args.dry_run)
    except RederiveError as exc:
        print(f"ticklake: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
    print(json.dumps(report.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
