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

``ticklake bench --stages platform,completeness`` runs only the stages named (see ``STAGES``).

Stages that open the embedded warehouse run in their own processes (chdb: one data path per process).
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import orjson

from ticklake.settings import Settings

TARGETS = {
    "normalize_vs_decode": 0.50,
    "gaps_and_dedup_overhead": 0.20,
    "ingest_vs_direct_arrow": 0.60,
    "latency_p50_ms": 50.0,
    "latency_p99_ms": 200.0,
    "ohlcv_p99_ms": 20.0,
    "peak_rss_mb": 1536.0,
    "bus_e2e_trades_per_s": 100_000.0,
    "bus_latency_p50_ms": 50.0,
    "bus_latency_p99_ms": 250.0,
    "offload_vs_append": 0.70,
    "platform_cores_at_50": 0.25,
    "platform_cores_at_500": 0.5,
    "platform_rss_mb_at_50": 400.0,
    "platform_latency_p99_ms": 200.0,
    "candles_while_ingesting_p99_ms": 30.0,
    "candles_while_ingesting_rps": 200.0,
    "readers_latency_ratio": 1.5,
    "readers_backlog_s": 1.0,
    "stream_p50_ms": 50.0,
    "stream_p99_ms": 150.0,
    "export_vs_direct": 0.50,
    "export_rss_mb": 300.0,
}
STAGES = ("normalize", "handlers", "ingest", "latency", "serving", "bus", "cold_tier", "completeness", "platform",
          "stream", "export", "segments")
LAKE_STAGES = "ticklake.bench.lake_stages"
COMPLETENESS_STAGES = "ticklake.bench.completeness_stages"


def _stage(*args: str, timeout: float = 1800, module: str = "ticklake.bench.stages",
           env: dict[str, str] | None = None) -> dict[str, Any]:
    env = {**(os.environ if env is None else env), "TZ": "UTC"}
    result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                            env=env, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"bench stage {args[0]} failed:\n{result.stderr[-3000:]}")
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


# --- 1. normalize -------------------------------------------------------------------------------
def _recorded_frames(workdir: Path, seconds: float) -> dict[str, list[str]]:
    """Frames exactly as the feeds received them from the simulator, at a high trade rate."""
    from ticklake.exchanges.recording import read_session
    from ticklake.replay import record

    settings = Settings(data_dir=workdir)
    settings.simulator.trades_per_second = 300
    settings.simulator.seed = 11
    path = workdir / "normalize.tlrec"
    asyncio.run(record(settings, path, simulate=True, seconds=seconds))
    frames: dict[str, list[str]] = defaultdict(list)
    for recorded in read_session(path):
        if isinstance(recorded.payload, str):
            frames[recorded.exchange].append(recorded.payload)
    return frames


def _rate(function: Any, frames: list[str], min_seconds: float = 1.0) -> float:
    rounds = 0
    started = time.perf_counter()
    while True:
        for frame in frames:
            function(frame)
        rounds += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return rounds * len(frames) / elapsed


def _rate_tracked(exchange: str, parse: Any, frames: list[str], min_seconds: float = 1.0,
                  dedup: bool = True) -> float:
    """Parse, track gaps (a fresh tracker each pass, so ids are new as they are live) and split the
    pass's trades as the writer deduplicates a batch: the handler's and the writer's per-trade work.
    A venue whose ids do not count its trades tracks no gap: its feed notes each market's newest trade
    and, reconciled by time, the ids held (``FrameHandler.hold``) instead."""
    from ticklake.exchanges.feeds.frames import FrameHandler
    from ticklake.exchanges.gaps import GapTracker, SeenTrades
    from ticklake.venues import venue
    from ticklake.warehouse.writer import split_batch

    facts = venue(exchange)

    def tracker() -> Any:
        if facts.ids_count_trades:
            return GapTracker().observe
        seen = SeenTrades(180_000_000) if facts.completeness == "reconciled-by-time" else None
        return FrameHandler(exchange, parse, None, GapTracker(), {}, track_ids=False,  # type: ignore[arg-type]
                            seen=seen).hold

    rounds = 0
    started = time.perf_counter()
    while True:
        observe = tracker()
        batch: list[Any] = []
        if dedup:
            for frame in frames:
                trades = parse(frame).trades
                observe(trades)
                batch += trades
            split_batch(batch)
        else:
            for frame in frames:
                observe(parse(frame).trades)
        rounds += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return rounds * len(frames) / elapsed


def normalize(workdir: Path, seconds: float) -> dict[str, Any]:
    from ticklake.exchanges.mappers import parser_for

    results: dict[str, Any] = {}
    for exchange, frames in sorted(_recorded_frames(workdir, seconds).items()):
        parse = parser_for(exchange)
        trades = sum(len(parse(f, 0).trades) for f in frames)
        decode = msgspec.json.decode
        rates = {"orjson": [], "msgspec": [], "normalize": [], "tracked": [], "gaps": []}  # type: dict[str, list[float]]
        bound = functools.partial(parse, received_us=0, conn_id="b", frame_seq=0)
        for _ in range(3):  # alternate, so all see the same load
            rates["orjson"].append(_rate(orjson.loads, frames))
            rates["msgspec"].append(_rate(decode, frames))
            rates["normalize"].append(_rate(bound, frames))
            rates["gaps"].append(_rate_tracked(exchange, bound, frames, dedup=False))
            rates["tracked"].append(_rate_tracked(exchange, bound, frames))
        normalize_rate = statistics.median(rates["normalize"])
        decode_rate = max(statistics.median(rates["orjson"]), statistics.median(rates["msgspec"]))
        results[exchange] = {
            "frames": len(frames), "trades_per_frame": round(trades / len(frames), 2),
            "normalize_frames_per_s": round(normalize_rate), "normalize_trades_per_s": round(normalize_rate * trades /
                                                                                         len(frames)),
            "json_decode_frames_per_s": round(decode_rate), "ratio": round(normalize_rate / decode_rate, 3),
            "with_gaps_and_dedup_frames_per_s": round(statistics.median(rates["tracked"])),
            "gaps_and_dedup_overhead": round(normalize_rate / statistics.median(rates["tracked"]) - 1, 3),
            "gaps_only_overhead": round(normalize_rate / statistics.median(rates["gaps"]) - 1, 3),
        }
    return results


# --- 4. serving ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serving(workdir: Path, trades: int, requests: int) -> dict[str, Any]:
    path = str(workdir / "serving")
    generated = _stage("generate", path, str(trades))
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "ticklake.bench.stages", "serve", path, str(port)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "TZ": "UTC"})
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "serving"
        connection = _connect(port)
        latencies: list[float] = []
        symbols = 10
        for i in range(requests + 50):
            query = f"/v1/ohlcv?exchange=binance&symbol=SYM{i % symbols}/USDT&timeframe=1m&limit=500"
            started = time.perf_counter()
            connection.request("GET", query)
            response = connection.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200 or len(orjson.loads(body)["candles"]) != 500:
                raise RuntimeError(f"unexpected answer {response.status}: {body[:300]!r}")
            if i >= 50:  # the first requests warm caches
                latencies.append(elapsed)
        latencies.sort()
        rss = _rss_of(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    return {"trades": trades, "generate_rows_per_s": generated["rows_per_s"], "requests": requests,
            "p50_ms": round(latencies[len(latencies) // 2], 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)], 2), "response_bytes": len(body),
            "server_rss_mb": rss}


def _connect(port: int) -> http.client.HTTPConnection:
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.connect()
            return connection
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _rss_of(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        return None
    return None


# --- 7. cold tier -------------------------------------------------------------------------------
def cold_tier(workdir: Path, sizes: dict[str, Any]) -> dict[str, Any]:
    """Offload against append, a year of 1h candles over HTTP (as offloaded, then compacted, and warm),
    and the daily maintenance; every Iceberg side on local disk with the embedded SQLite catalog."""
    report: dict[str, Any] = {"offload": _stage(
        "offload", str(workdir / "lake-offload"), str(sizes["lake_trades"]), str(sizes["lake_markets"]),
        str(sizes["lake_rounds"]), str(sizes["lake_commits"]), module=LAKE_STAGES)}
    path = str(workdir / "lake-year")
    year = report["year"] = _stage("year", path, str(sizes["year_markets"]), str(sizes["year_step_s"]),
                                   str(sizes["year_commits"]), module=LAKE_STAGES)
    requests = int(sizes["year_requests"])
    report["as_offloaded"] = _year_over_http(path, year, requests)
    report["compaction"] = _stage("compact", path, "gold_ohlcv_1h", module=LAKE_STAGES)
    report["compacted"] = _year_over_http(path, year, requests)
    return report


def _year_over_http(path: str, year: dict[str, Any], fetches: int) -> dict[str, Any]:
    """Fetch a market's whole year of 1h candles as a user does (pages of the API's largest limit, each
    starting after the last candle of the one before), from the tiered app (every candle cold) and
    from the warm-only app, alternating; ``fetches`` times each after a few to warm up."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", LAKE_STAGES, "serve", path, str(port), str(year["end"])],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "TZ": "UTC"})
    limit = Settings().api.max_limit
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "serving"
        connection = _connect(port)

        def fetch(prefix: str, symbol: str) -> tuple[list[Any], list[float], set[str]]:
            candles: list[Any] = []
            pages: list[float] = []
            tiers: set[str] = set()
            start_ms, end_ms = year["start"] * 1000, year["end"] * 1000
            while True:
                query = (f"{prefix}/v1/ohlcv?exchange=binance&symbol={symbol}&timeframe=1h&start={start_ms}"
                         f"&end={end_ms}&limit={limit}")
                started = time.perf_counter()
                connection.request("GET", query)
                response = connection.getresponse()
                body = response.read()
                pages.append((time.perf_counter() - started) * 1000)
                if response.status != 200:
                    raise RuntimeError(f"unexpected answer {response.status}: {body[:300]!r}")
                answer = orjson.loads(body)
                candles += answer["candles"]
                tiers.add(answer["tier"])
                if len(answer["candles"]) < limit:
                    return candles, pages, tiers
                last = datetime.fromisoformat(answer["candles"][-1]["time"].replace("Z", "+00:00"))
                start_ms = int(last.timestamp()) * 1000 + 3_600_000

        results: dict[str, dict[str, list[float]]] = {side: {"year": [], "page": []} for side in ("cold", "warm")}
        first_ms = None
        identical = True
        tiers: dict[str, set[str]] = {"cold": set(), "warm": set()}
        candles = 0
        warm_up = 3
        for i in range(fetches + warm_up):
            symbol = f"SYM{i % year['markets']}/USDT"
            answers = {}
            for side in (("cold", "warm") if i % 2 == 0 else ("warm", "cold")):
                started = time.perf_counter()
                answers[side], pages, seen = fetch("" if side == "cold" else "/warm", symbol)
                elapsed = (time.perf_counter() - started) * 1000
                tiers[side] |= seen
                if first_ms is None:
                    first_ms = elapsed  # the first cold fetch: the catalog and metadata are loaded
                if i >= warm_up:
                    results[side]["year"].append(elapsed)
                    results[side]["page"] += pages
            identical = identical and answers["cold"] == answers["warm"]
            candles = len(answers["cold"])
        rss = _rss_of(server.pid)
    finally:
        server.terminate()
        server.wait(30)

    def quantiles(samples: list[float]) -> dict[str, float]:
        ordered = sorted(samples)
        return {"p50_ms": round(ordered[len(ordered) // 2], 1),
                "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1)}

    return {"fetches": fetches, "candles": candles, "page_limit": limit,
            "pages": len(results["cold"]["page"]) // max(1, fetches), "first_fetch_ms": round(first_ms or 0, 1),
            "cold": {"year": quantiles(results["cold"]["year"]), "page": quantiles(results["cold"]["page"]),
                     "tiers": sorted(tiers["cold"])},
            "warm": {"year": quantiles(results["warm"]["year"]), "page": quantiles(results["warm"]["page"]),
                     "tiers": sorted(tiers["warm"])},
            "identical": identical, "server_rss_mb": rss}


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
    _print(report)
    return 0


def _run_stage(stage: str, settings: Settings, workdir: Path, sizes: dict[str, Any]) -> dict[str, Any]:
    if stage == "normalize":
        return normalize(workdir, sizes["normalize_s"])
    if stage == "handlers":
        return _stage("handlers", str(sizes["handlers_s"]), "100", "60")
    if stage == "ingest":
        return _stage("ingest", str(workdir / "ingest"), str(sizes["ingest"]))
    if stage == "latency":
        return _stage("latency", str(workdir / "latency"), str(sizes["latency_s"]), "500")
    if stage == "serving":
        return serving(workdir, int(sizes["serving"]), int(sizes["requests"]))
    if stage == "bus":
        from ticklake.bench.broker import run_broker_stages

        return run_broker_stages(settings, workdir, sizes)
    if stage == "cold_tier":
        return cold_tier(workdir, sizes)
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


def _verdict(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "meets" if ok else "MISSES"


def _print(report: dict[str, Any]) -> None:
    lines = [f"ticklake bench — {report['date']} — {report['machine']}"]
    for stage, describe in (("normalize", _normalize_lines), ("handlers", _handler_lines),
                            ("ingest", _ingest_lines), ("latency", _latency_lines), ("serving", _serving_lines),
                            ("bus", _broker_lines), ("cold_tier", _cold_tier_lines),
                            ("completeness", _completeness_lines), ("platform", _platform_lines),
                            ("stream", _stream_lines), ("export", _export_lines)):
        if stage in report:
            lines += describe(report)
    if "segments" in report:
        from ticklake.bench.segment_stages import segment_lines

        lines += segment_lines(report)
    if "latency" in report and "serving" in report:
        lat, s = report["latency"], report["serving"]
        peak = max(lat["peak_rss_mb"], s["server_rss_mb"] or 0)
        lines += ["", f"peak RSS: platform (latency run) {lat['peak_rss_mb']} MB, API over {s['trades']:,} trades "
                  f"{s['server_rss_mb']} MB ({_verdict(peak, TARGETS['peak_rss_mb'], False)} ≤ 1536 MB)"]
    print("\n".join(lines))
    print("\n" + json.dumps(report))


def _broker_lines(report: dict[str, Any]) -> list[str]:
    return _bus_lines(report["bus"], report.get("ingest"))


def _normalize_lines(report: dict[str, Any]) -> list[str]:
    lines = ["", "normalize (frames as received from the simulator), per venue:"]
    for exchange, r in report["normalize"].items():
        lines.append(f"  {exchange:9s} {r['normalize_frames_per_s']:>10,} frames/s {r['normalize_trades_per_s']:>10,} "
                     f"trades/s | bare JSON decode {r['json_decode_frames_per_s']:>10,} frames/s | ratio "
                     f"{r['ratio']:.2f} ({_verdict(r['ratio'], TARGETS['normalize_vs_decode'], True)} ≥ 0.50)")
        overhead = r["gaps_and_dedup_overhead"]
        verdict = _verdict(overhead, TARGETS["gaps_and_dedup_overhead"], False)
        lines.append(f"  {'':9s} + gap tracking and batch dedup {r['with_gaps_and_dedup_frames_per_s']:>10,} frames/s: "
                     f"overhead {overhead:.0%} ({verdict} ≤ 20 %); gap tracking alone {r['gaps_only_overhead']:.0%}")
    return lines


def _handler_lines(report: dict[str, Any]) -> list[str]:
    h = report["handlers"]
    per_venue = ", ".join(f"{k} {v:,}" for k, v in h["trades_per_s"].items())
    return ["", f"feed handlers, {h['symbols_per_venue']} symbols per venue, simulator in another process, "
                f"{h['seconds']:g} s:",
            f"  {h['total_trades_per_s']:,} trades/s ({per_venue})"
            f" using {h['cpu_share']:.0%} of one core: {h['cpu_us_per_trade']} µs of CPU a trade"]


def _ingest_lines(report: dict[str, Any]) -> list[str]:
    i = report["ingest"]
    verdict = _verdict(i["ratio"], TARGETS["ingest_vs_direct_arrow"], True)
    return ["", f"ingest through raw → bronze → silver → gold, {i['trades']:,} trades in {i['batch']:,}-row batches:",
            f"  writer {i['writer_trades_per_s']:>10,} trades/s | direct Arrow insert "
            f"{i['direct_arrow_trades_per_s']:>10,} trades/s | ratio {i['ratio']:.2f} ({verdict} ≥ 0.60)"]


def _latency_lines(report: dict[str, Any]) -> list[str]:
    lat = report["latency"]
    return ["", f"trade → candle latency at {lat['trades_per_s']} trades/s for {lat['seconds']:g} s "
                f"({lat['trades']:,} trades):",
            f"  p50 {lat['p50_ms']} ms ({_verdict(lat['p50_ms'], TARGETS['latency_p50_ms'], False)} ≤ 50) | "
            f"p99 {lat['p99_ms']} ms ({_verdict(lat['p99_ms'], TARGETS['latency_p99_ms'], False)} ≤ 200) | "
            f"max {lat['max_ms']} ms"]


def _serving_lines(report: dict[str, Any]) -> list[str]:
    s = report["serving"]
    return ["", f"/v1/ohlcv, 500 one-minute candles over {s['trades']:,} stored trades, {s['requests']} requests:",
            f"  p50 {s['p50_ms']} ms | p99 {s['p99_ms']} ms "
            f"({_verdict(s['p99_ms'], TARGETS['ohlcv_p99_ms'], False)} ≤ 20) | {s['response_bytes']:,} bytes"]


def _stream_lines(report: dict[str, Any]) -> list[str]:
    s = report["stream"]
    lines = ["", "the live stream (/v1/stream), `ticklake up` at 500 trades/s, clients subscribed to one market's "
                 "trades and 1m candles: trade received -> the first candle update counting it delivered"]
    for key in ("one", "hundred"):
        r = s["latency"][key]
        verdict = (f" ({_verdict(r['p50_ms'] or 1e9, TARGETS['stream_p50_ms'], False)} ≤ 50, "
                   f"{_verdict(r['p99_ms'] or 1e9, TARGETS['stream_p99_ms'], False)} ≤ 150)")
        lines.append(f"  {r['clients']:>3} client{'s' if r['clients'] > 1 else ' '}: p50 {r['p50_ms']} ms, p99 "
                     f"{r['p99_ms']} ms, max {r['max_ms']} ms ({r['trades']} trades){verdict} | read back "
                     f"after the write: p50 {r['confirmed_p50_ms']} ms, p99 {r['confirmed_p99_ms']} ms")
    f = s["fanout"]
    lines.append(f"  fan-out to {f['clients']} clients, one process: {f['hub']['messages_per_s']:,} messages/s through "
                 f"the hub ({f['hub']['server_cores']} cores) | the same bytes sent straight to the sockets: "
                 f"{f['raw']['messages_per_s']:,} messages/s ({f['raw']['server_cores']} cores)")
    return lines


def _export_lines(report: dict[str, Any]) -> list[str]:
    e = report["export"]
    before = e["rss_before_mb"]
    lines = ["", f"file exports of {e['trades']:,} trades of one market over HTTP (`ticklake api` in a process of its "
                 f"own; RSS before {before['rss']} MB: anon {before.get('anon')}, file {before.get('file')}), next to "
                 "the same rows read straight out of ClickHouse in that format, same run:"]
    for fmt in ("csv", "parquet", "arrow"):
        r = e[fmt]
        lines.append(f"  {fmt:8s} {r['api_rows_per_s']:>10,} rows/s {r['api_mb_per_s']:>7} MB/s ({r['rows']:,} "
                     f"rows) | direct {r['direct_rows_per_s']:>10,} rows/s {r['direct_mb_per_s']:>7} MB/s | ratio "
                     f"{r['ratio']:.2f} "
                     f"({_verdict(r['ratio'], TARGETS['export_vs_direct'], True)} ≥ 0.50) | API peak RSS "
                     f"{r['peak_rss_mb']} MB ({_verdict(r['peak_rss_mb'], TARGETS['export_rss_mb'], False)} < 300)")
    c = e["client"]
    lines.append(f"  Python client, DataFrame of {c['rows']:,} trades (float64 columns): from an Arrow export "
                 f"{c['arrow_rows_per_s']:,} rows/s, Parquet {c['parquet_rows_per_s']:,} rows/s | JSON pages of 5,000 "
                 f"{c['json_rows_per_s']:,} rows/s; the same frames: {c['same_frames']}")
    return lines


def _platform_lines(report: dict[str, Any]) -> list[str]:
    p = report["platform"]
    lines = ["", "one small write (4 trades, one frame) through every layer, CPU per write by table, in one process:"]
    for name, label in (("packed", "parts packed into one file (migration 0005)"),
                        ("default", "ClickHouse's default parts (schema version 4)")):
        w = p["small_writes"][name]
        tables = ", ".join(f"{table} {ms}" for table, ms in w["by_table_ms"].items())
        lines.append(f"  {label:48s} {w['ms_per_write']:>6} ms ({tables}; {w['writes']} writes)")
    lines += ["", "the whole embedded platform (`ticklake up`: feeds, embedded bus, writer, API, offloader), the "
                  "simulator in another process, 80 markets; cores count the platform process and its cold-tier "
                  "worker:"]
    for rate, r in p["loads"].items():
        target = {"50": TARGETS["platform_cores_at_50"], "500": TARGETS["platform_cores_at_500"]}.get(rate)
        cores = f"{r['cores']:.3f} cores" + (f" ({_verdict(r['cores'], target, False)} ≤ {target:g})" if target else "")
        rss = f"RSS {r['rss_mb']} MB (anon {r.get('rss_anon_mb')}, file {r.get('rss_file_mb')})" + (
            f" ({_verdict(r['rss_mb'], TARGETS['platform_rss_mb_at_50'], False)} ≤ 400"
            f"{', pandas loaded' if r.get('pandas_loaded') else ''})" if rate == "50" else "")
        p99 = r["latency_p99_ms"]
        lines.append(f"  {int(rate):>5,} trades/s asked, {r['trades_per_s']:>5,} stored: {cores} | "
                     f"{r['cores_per_1000_trades_per_s']} cores per 1,000 trades/s | {rss} | {r['writes_per_s']} "
                     f"writes/s | trade → candle p50 {r['latency_p50_ms']} ms, p99 {p99} ms "
                     f"({_verdict(p99 or 1e9, TARGETS['platform_latency_p99_ms'], False)} ≤ 200), max "
                     f"{r['latency_max_ms']} ms")
    for rate, r in p["loads"].items():
        if r.get("worker_runs"):
            lines.append(f"    at {int(rate):,} trades/s the cold tier's worker process (lake/worker.py) ran "
                         f"{r['worker_runs']} time(s) before and during the window, {r['worker_cpu_s_so_far']} CPU-s "
                         f"in all (counted in the cores above when in the window: {r['worker_cores']}); in the "
                         f"window it ran {r['worker_alive_share']:.0%} of the time; its peak RSS since the start "
                         f"{r.get('worker_peak_ever_rss_mb')} MB, the platform's with it "
                         f"{r.get('with_worker_peak_ever_rss_mb')} MB")
    lines.append("  where the CPU goes (cores, per thread group) at " + ", ".join(f"{int(k):,}" for k in p["loads"])
                 + " trades/s:")
    groups = sorted({g for r in p["loads"].values() for g in r["cpu_by_thread"]},
                    key=lambda g: -max(r["cpu_by_thread"].get(g, 0.0) for r in p["loads"].values()))
    for group in groups:
        lines.append(f"    {group:38s} " + " | ".join(f"{r['cpu_by_thread'].get(group, 0.0):.3f}"
                                                     for r in p["loads"].values()))
    c = p["candles"]
    ing, live, idle = c["ingesting"]["load"], c["live"]["load"], c["idle"]["load"]
    lines += [f"  /v1/ohlcv, 500 one-minute candles of a quiet market, back to back on one connection, while ingesting "
              f"{c['ingesting']['trades_per_s']:,} trades/s: p50 {ing['p50_ms']} ms, p99 {ing['p99_ms']} ms "
              f"({_verdict(ing['p99_ms'] or 1e9, TARGETS['candles_while_ingesting_p99_ms'], False)} ≤ 30), "
              f"{ing['requests_per_s']} requests/s "
              f"({_verdict(ing['requests_per_s'], TARGETS['candles_while_ingesting_rps'], True)} ≥ 200) | idle: "
              f"p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms, {idle['requests_per_s']} requests/s",
              f"    the newest candles ({live['candles']}) of a market every batch writes, same connection: p50 "
              f"{live['p50_ms']} ms, p99 {live['p99_ms']} ms, {live['requests_per_s']} requests/s"]
    without, with_ = p["readers"]["without"], p["readers"]["with"]
    ratio = (with_["latency_p99_ms"] or 1e9) / (without["latency_p99_ms"] or 1)
    load = with_["load"]
    backlog = max(with_["backlog_max_s"] or 0.0, 0.0)
    health = ", ".join(f"{k} {v}" for k, v in load["health"].items())
    answers = ", ".join(f"{k} {v}" for k, v in sorted(load["statuses"].items()))
    lines += [f"  32 heavy readers (/v1/trades, 5,000 trades each, back to back) for {with_['seconds']:g} s at "
              f"{with_['trades_per_s']:,} trades/s, next to the same time without them:",
              f"    trade → candle p99 {with_['latency_p99_ms']} ms vs {without['latency_p99_ms']} ms: "
              f"{ratio:.2f} times "
              f"({_verdict(ratio, TARGETS['readers_latency_ratio'], False)} ≤ 1.5) | /health {health} | bus backlog "
              f"at most {with_['backlog_max']} messages = {backlog} s of trades "
              f"({_verdict(backlog, TARGETS['readers_backlog_s'], False)} < 1) | CPU {with_['cores']} cores "
              f"(without: {without['cores']})",
              f"    answers: {answers} (Retry-After: {', '.join(load['retry_after']) or 'none sent'})"]
    return lines


def _completeness_lines(report: dict[str, Any]) -> list[str]:
    check = report["completeness"]
    lines = ["", f"completeness check over {check['trades']:,} stored trades ({check['markets']} markets, "
                 f"{check['days']:g} days), per window checked:"]
    for w in check["windows"]:
        lines.append(f"  {w['window_s'] / 3600:>5g} h ({w['trades_in_window']:>10,} trades, {w['holes_found']} holes): "
                     f"check {w['check_ms']:>7} ms (holes {w['holes_ms']}, candles {w['gold_ms']}) | bare count of "
                     f"the window {w['count_ms']:>6} ms | {w['share_of_warehouse_thread_at_60s']:.2%} of the "
                     "warehouse thread every 60 s")
    return lines


def _bus_lines(bus: dict[str, Any], ingest: dict[str, Any] | None) -> list[str]:
    if "skipped" in bus:
        return ["", f"distributed mode (Kafka bus): {bus['skipped']}"]
    lines = ["", f"distributed mode, Kafka bus on loopback ({bus.get('broker', 'no broker started')}; 1-minute "
                 f"load average {bus['load_average_before']} before, {bus['load_average_after']} after):"]

    def failed(name: str) -> bool:
        if "error" in bus.get(name, {}):
            lines.append(f"  {name}: failed: {bus[name]['error'].strip().splitlines()[-1]}")
            return True
        return name not in bus

    if not failed("produce_consume"):
        p, c = bus["produce_consume"]["produce"], bus["produce_consume"]["consume"]
        lines += [
            f"  produce {p['messages']:,} trades ({p['value_bytes']} B, {p['compression']}, linger "
            f"{p['linger_ms']:g} ms, {p['partitions']} partitions), median of {p['rounds']} alternating rounds:",
            f"    KafkaProducerBus {p['role_msgs_per_s']:>10,} msgs/s ({p['role_cpu_us_per_msg']} µs CPU/msg) | bare "
            f"Producer, same bytes and config {p['bare_msgs_per_s']:>10,} msgs/s ({p['bare_cpu_us_per_msg']} µs) | "
            f"ratio {p['ratio']:.2f}; encoding alone {p['encode_msgs_per_s']:,}/s",
            f"  consume the same messages, {c['batch']:,}-message batches:",
            f"    KafkaSource      {c['role_msgs_per_s']:>10,} msgs/s ({c['role_cpu_us_per_msg']} µs CPU/msg) | bare "
            f"Consumer, no decoding       {c['bare_msgs_per_s']:>10,} msgs/s ({c['bare_cpu_us_per_msg']} µs) | "
            f"ratio {c['ratio']:.2f}; decoding alone {c['decode_msgs_per_s']:,}/s"]
    if not failed("e2e"):
        e = bus["e2e"]
        embedded = bus.get("e2e_embedded", {})
        rate = e["trades_per_s"]
        verdict = _verdict(rate, TARGETS["bus_e2e_trades_per_s"], True) if rate is not None else "INCOMPLETE"
        i, pr = e["ingest"], e["producer"]
        spent = ", ".join(f"{k} {v:.2f} s" for k, v in i["seconds_in"].items())
        lines += [
            f"  feed → broker → ClickHouse, {e['trades']:,} trades + {e['frames']:,} frames, producer and ingest in "
            f"separate processes, first publish → last trade in silver:",
            f"    {rate or 0:>10,} trades/s in {e['seconds']} s ({verdict} ≥ 100,000) | embedded bus, same rows "
            f"{embedded.get('trades_per_s', 0):>10,} trades/s | writer alone (ingest stage) "
            f"{ingest['writer_trades_per_s'] if ingest else 'not run'} trades/s",
            f"    ingest side: {spent} ({i['batches']} batches); CPU: ingest {i['cpu_s']} s, producer {pr['cpu_s']} s "
            f"(its publishing took {pr['flushed_s']} s)"
            + (f", broker {e['broker_cpu_s']} s" if e["broker_cpu_s"] is not None else "")]
    if not failed("latency"):
        lat, emb = bus["latency"], bus.get("latency_embedded", {})
        if "skipped" in lat:
            lines.append(f"  latency: skipped: {lat['skipped']}")
        else:
            lines += [
                f"  trade → candle at {lat['trades_per_s']} trades/s for {lat['seconds']:g} s, every role in one "
                "process through the broker:",
                f"    p50 {lat['p50_ms']} ms ({_verdict(lat['p50_ms'], TARGETS['bus_latency_p50_ms'], False)} ≤ 50) | "
                f"p99 {lat['p99_ms']} ms ({_verdict(lat['p99_ms'], TARGETS['bus_latency_p99_ms'], False)} ≤ 250) | "
                f"max {lat['max_ms']} ms; of the p50, {lat['until_write_p50_ms']} ms until its batch is written, "
                f"a write {lat['write_p50_ms']} ms",
                f"    embedded bus, same rate and duration: p50 {emb.get('p50_ms')} ms | p99 {emb.get('p99_ms')} ms | "
                f"max {emb.get('max_ms')} ms; {emb.get('until_write_p50_ms')} ms until written, a write "
                f"{emb.get('write_p50_ms')} ms"]
    rss = [bus[name].get("broker_peak_rss_mb") for name in ("produce_consume", "e2e", "latency") if name in bus]
    if any(rss):
        lines.append(f"  broker peak RSS per stage: {', '.join(f'{r} MB' for r in rss if r)}")
    return lines


def _cold_tier_lines(report: dict[str, Any]) -> list[str]:
    cold = report["cold_tier"]
    o = cold["offload"]
    lines = ["", f"cold tier (Iceberg, SQLite catalog and files on local disk), a day of {o['trades']:,} trades over "
                 f"{o['markets']} markets:",
             f"  offload_table into an empty table against a bare pyiceberg append of the same Arrow rows into an "
             f"empty table (one commit each), median of {next(iter(o['layers'].values()))['rounds']} alternating "
             "rounds:"]
    for name, r in o["layers"].items():
        unit = "candles" if name.startswith("gold") else "rows"
        verdict = _verdict(r["ratio"], TARGETS["offload_vs_append"], True)
        lines.append(f"    {name:14s} {r['rows']:>9,} {unit:7s} offload {r['offload_rows_per_s']:>9,}/s | append "
                     f"{r['append_rows_per_s']:>9,}/s | ratio {r['ratio']:.2f} ({verdict} ≥ 0.70); of an offload: "
                     f"reading {r['read_s']} s, the commit {r['commit_s']} s")
    year = cold["year"]
    lines.append(f"  /v1/ohlcv, a market's year of 1h candles ({year['markets']} markets, {year['candles']:,} candles "
                 f"offloaded in {year['commits']} commits), over HTTP:")
    for label, key, files in (("as offloaded", "as_offloaded", year["data_files"]),
                              ("compacted", "compacted", cold["compaction"]["files_after"])):
        s = cold[key]
        c, w = s["cold"], s["warm"]
        lines.append(f"    {label:12s} ({files} data files): the year ({s['candles']:,} candles in {s['pages']} "
                     f"pages of {s['page_limit']:,}) cold p50 {c['year']['p50_ms']} ms p99 {c['year']['p99_ms']} ms "
                     f"(a page p50 {c['page']['p50_ms']} ms) | warm p50 {w['year']['p50_ms']} ms p99 "
                     f"{w['year']['p99_ms']} ms | same candles: {s['identical']}; first cold fetch "
                     f"{s['first_fetch_ms']} ms")
    m = o["maintenance"]
    lines.append(f"  a day of offloads, {m['commits_per_table']} commits a table ({m['commit_ms']} ms a commit), then "
                 f"maintain (compaction, snapshot expiry, orphan removal) over {len(m['tables'])} tables: "
                 f"{m['maintain_s']} s; data files {m['files_before']} → {m['files_after']}")
    lines.append(f"    silver scan, one market, one hour ({m['scan_rows']:,} trades): {m['scan_before_ms']} ms "
                 f"before, {m['scan_after_ms']} ms after; per table: "
                 + ", ".join(f"{name} {t['seconds']} s" for name, t in m["tables"].items() if t["files_before"] > 1))
    return lines
