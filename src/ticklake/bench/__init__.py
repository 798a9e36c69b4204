"""``ticklake bench``: the benchmark. It prints figures; it asserts nothing.

Every comparison is made side by side in one run (these machines are shared and noisy):

1. normalize: each venue's mapper against a bare JSON decode of the same recorded frames;
2. handlers: the feeds with 100 symbols per venue against the simulator: trades/s and CPU per trade;
   ingest: the writer through every layer against a direct Arrow insert of the same rows;
3. latency: trade receive time -> candle queryable at 500 trades/s, simulator in another process;
4. serving: ``/v1/ohlcv`` for 500 one-minute candles over 10M stored trades, over real HTTP;
5. peak RSS of the platform process (stage 3) and of the serving process;
6. the distributed mode, through a Kafka-API broker on loopback (``broker.py``; skipped without one):
   the feed role's producer against a bare confluent_kafka producer, the ingest role's consumer
   against a bare consumer, feed -> broker -> ClickHouse throughput (separate producer and ingest
   processes) against the embedded bus with the same rows, and trade -> candle latency at 500
   trades/s against the embedded bus at the same rate;
7. the cold tier (Iceberg, SQLite catalog on local disk; ``lake_stages.py``): the offload of each layer
   against a bare pyiceberg append of the very same Arrow rows; ``/v1/ohlcv`` for a year of 1h candles
   from the cold tier, as offloaded and after compaction, against the same request served warm; and
   the daily maintenance after a day of 15-minute offloads;
8. the completeness check (``completeness_stages.py``): its queries over a week of stored trades, for
   windows of 15 minutes to a day, against a bare count of each window's trades;
9. the whole embedded platform as it runs all day (``platform_stages.py``): its CPU, memory and trade ->
   candle latency at 50, 500 and 5,000 trades/s, where the CPU goes; ``/v1/ohlcv`` while ingesting next
   to idle; 32 heavy readers next to none.

10. the live stream (``stream_stages.py``), 11. file exports (``export_stages.py``), 12. latency by
    segment (``segment_stages.py``).

``ticklake bench --stages platform,completeness`` runs only the stages named (see ``STAGES``).

This module is the run: the sizes, the stages in order, the report printed (``report.py``, with the
targets it judges against) and the JSON line after it. Each stage is a ``*_stages.py`` module: stage 1 in
``normalize_stages.py``, stages 2 and 3 in ``stages.py``, 4 in ``serving_stages.py``, 7 in
``cold_tier_stages.py`` (which runs ``lake_stages.py``). Stages that open the embedded warehouse run in
their own processes (chdb: one data path per process), through ``_stage``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ticklake.bench.report import print_report
from ticklake.settings import Settings

STAGES = ("normalize", "handlers", "ingest", "latency", "serving", "bus", "cold_tier", "completeness", "platform",
          "stream", "export", "segments")
COMPLETENESS_STAGES = "ticklake.bench.completeness_stages"


def _stage(*args: str, timeout: float = 1800, module: str = "ticklake.bench.stages",
           env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one command of a stage module in a process of its own; its last line of output is its figures."""
    env = {**(os.environ if env is None else env), "TZ": "UTC"}
    result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                            env=env, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"bench stage {args[0]} failed:\n{result.stderr[-3000:]}")
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


# --- the whole run ------------------------------------------------------------------------------
def run_bench(settings: Settings, quick: bool = False, stages: frozenset[str] = frozenset(STAGES)) -> int:
    sizes = {"normalize_s": 3.0, "handlers_s": 5.0, "ingest": 200_000, "latency_s": 10.0, "serving": 1_000_000,
             "requests": 200, "bus_trades": 100_000, "bus_latency_s": 6.0} \
        if quick else {"normalize_s": 10.0, "handlers_s": 20.0, "ingest": 1_000_000, "latency_s": 60.0,
                       "serving": 10_000_000, "requests": 1000, "bus_trades": 300_000, "bus_latency_s": 20.0}
    # The cold tier: a day of trades (markets), offload rounds, commits of a day of offloads (96: every
    # 15 minutes; quick: hourly); a year of 1h candles (markets, one trade every step_s per market,
    # offload commits, fetches of the year over HTTP).
    sizes |= {"lake_trades": 200_000, "lake_markets": 20, "lake_rounds": 2, "lake_commits": 24, "year_markets": 3,
              "year_step_s": 3600, "year_commits": 12, "year_requests": 15} \
        if quick else {"lake_trades": 1_000_000, "lake_markets": 20, "lake_rounds": 3, "lake_commits": 96,
                       "year_markets": 5, "year_step_s": 600, "year_commits": 52, "year_requests": 50}
    # The completeness check: stored trades, markets, days.
    sizes |= {"check_trades": 1_000_000, "check_markets": 30, "check_days": 1.0} \
        if quick else {"check_trades": 10_000_000, "check_markets": 30, "check_days": 7.0}
    # The whole platform: warm-up before measuring, each load's window, the candle requests, the readers.
    sizes |= {"platform_warmup_s": 10.0, "platform_window_s": 10.0, "platform_reads_s": 5.0,
              "platform_readers_s": 15.0, "platform_writes": 150} \
        if quick else {"platform_warmup_s": 30.0, "platform_window_s": 30.0, "platform_reads_s": 20.0,
                       "platform_readers_s": 60.0, "platform_writes": 600}
    # The live stream: each latency window (1 client, then 100), the fan-out run.
    sizes |= {"stream_window_s": 8.0, "stream_fanout_s": 4.0} if quick else {"stream_window_s": 20.0,
                                                                             "stream_fanout_s": 10.0}
    # File exports: trades of one market.
    sizes |= {"export_trades": 1_000_000} if quick else {"export_trades": 10_000_000}
    # Latency by segment: each run's measured window (embedded, then through the broker).
    sizes |= {"segments_s": 8.0} if quick else {"segments_s": 20.0}
    unknown = stages - set(STAGES)
    if unknown:
        raise ValueError(f"unknown bench stages {sorted(unknown)}: choose from {', '.join(STAGES)}")
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
                   f"Python {platform.python_version()}",
        "sizes": sizes,
    }
    with tempfile.TemporaryDirectory(prefix="ticklake-bench-") as tmp:
        workdir = Path(tmp)
        for stage in STAGES:
            if stage in stages:
                print(f"{stage} ...", file=sys.stderr, flush=True)
                report[stage] = _run_stage(stage, settings, workdir, sizes)
    report["bench_process_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print_report(report)
    return 0


def _run_stage(stage: str, settings: Settings, workdir: Path, sizes: dict[str, Any]) -> dict[str, Any]:
    if stage == "normalize":
        from ticklake.bench.normalize_stages import run_normalize_stage

        return run_normalize_stage(workdir, sizes["normalize_s"])
    if stage == "handlers":
        return _stage("handlers", str(sizes["handlers_s"]), "100", "60")
    if stage == "ingest":
        return _stage("ingest", str(workdir / "ingest"), str(sizes["ingest"]))
    if stage == "latency":
        return _stage("latency", str(workdir / "latency"), str(sizes["latency_s"]), "500")
    if stage == "serving":
        from ticklake.bench.serving_stages import run_serving_stage

        return run_serving_stage(workdir, int(sizes["serving"]), int(sizes["requests"]))
    if stage == "bus":
        from ticklake.bench.broker import run_broker_stages

        return run_broker_stages(settings, workdir, sizes)
    if stage == "cold_tier":
        from ticklake.bench.cold_tier_stages import run_cold_tier_stage

        return run_cold_tier_stage(workdir, sizes)
    if stage == "completeness":
        return _stage("check", str(workdir / "completeness"), str(sizes["check_trades"]), str(sizes["check_markets"]),
                      str(sizes["check_days"]), module=COMPLETENESS_STAGES)
    if stage == "stream":
        from ticklake.bench.stream_stages import run_stream_stages

        return run_stream_stages(workdir, sizes)
    if stage == "export":
        from ticklake.bench.export_stages import run_export_stages

        return run_export_stages(workdir, sizes)
    if stage == "segments":
        from ticklake.bench.segment_stages import run_segment_stages

        return run_segment_stages(settings, workdir, sizes)
    from ticklake.bench.platform_stages import run_platform_stages

    return run_platform_stages(workdir, sizes)


