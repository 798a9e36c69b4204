"""``ticklake soak``: the embedded platform at steady loads for a long while, measured from outside.

For each load (trades per second in total across the enabled venues; 50, 250 and 500 by default: 1x,
5x and 10x the planned load), a simulator process trades at that rate and ``ticklake up`` (every
role, embedded bus, a fresh data directory) runs over it in a process of its own, for ``duration``
seconds. Every ``interval`` seconds the soak samples each process's CPU (cores, from ``/proc``
deltas, descendants included) and RSS, and the platform's trade -> candle latency (p50/p99 of what
its histogram observed in the interval), stored trades per second and bus backlog (``/metrics``,
``/health``). Then, "beyond": the load doubles, step after step, until the platform falls behind.

Files, in ``--out``: ``soak.csv`` (one row per sample per process), ``soak.png`` (CPU, RSS, p99 and
backlog over time, load steps marked), ``soak.json`` (each step's figures and the verdicts) and each
step's logs. A separate command rather than a bench stage: it writes files and runs for most of an
hour by default; ``ticklake bench`` prints figures and keeps nothing.

Verdicts (the issue's pass criteria), each over the steady part of a step (its last two thirds):

- no leak: the platform's RSS slope (least squares, MB per minute) at each planned load at most
  ``RSS_SLOPE_LIMIT_MB_PER_MIN``; judged only where that window spans at least ``RSS_MIN_WINDOW_S``;
- trade -> candle p99 at most 200 ms at the last planned load (10x);
- the whole platform at the first planned load (1x) under 0.25 of one core.

A step "holds" (the platform keeps up) when it stores at least 90 % of the asked rate and its backlog
does not grow by more than a second of trades over the steady window. Latency is reported, and a p99
above a second (the ``TradeToCandleSlow`` alert) is flagged, but does not by itself end the stepping:
on a machine other work saturates, latency says more about the machine than about the platform's
capacity, which is where its backlog starts to grow. The maximum sustained rate is the highest step
that held with every step below it holding too.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import platform as host
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ticklake.bench.simulator_process import start_simulator
from ticklake.bench.soak_probe import PlatformFigures, process_tree, quantile, read_platform, share_within
from ticklake.drill.services import free_port
from ticklake.settings import Settings

PLANNED_LOADS = (50.0, 250.0, 500.0)
CORES_LIMIT_AT_1X = 0.25
P99_LIMIT_MS_AT_10X = 200.0
# A leak that grows the platform by 0.5 MB a minute (720 MB a day) takes a ~500 MB platform past the
# 1.5 GB memory target within two days; below it, ten minutes of samples cannot tell a leak from
# ClickHouse's caches and merges settling (a few MB up and down between samples).
RSS_SLOPE_LIMIT_MB_PER_MIN = 0.5
RSS_MIN_WINDOW_S = 120.0
BEHIND_P99_S = 1.0  # the TradeToCandleSlow alert (deploy/prometheus/alerts.yml)
BEHIND_STORED_SHARE = 0.9
CSV_FIELDS = ("time_utc", "elapsed_s", "step", "load_per_s", "role", "process", "pid", "cpu_cores", "rss_mb",
              "stored_per_s", "received_per_s", "latency_p50_ms", "latency_p99_ms", "backlog", "load_average_1m")


class SoakError(RuntimeError):
    """The soak could not run as asked (the message says why)."""


@dataclass
class SoakOptions:
    loads: list[float]
    duration_s: float
    interval_s: float
    out: Path
    beyond: bool = True
    beyond_duration_s: float | None = None  # default: duration_s
    max_load: float = 64_000.0


@dataclass
class StepResult:
    step: int
    load_per_s: float
    planned: bool
    seconds: float
    steady_from_s: float
    samples: int = 0
    platform_cores: float | None = None
    simulator_cores: float | None = None
    platform_rss_mb: float | None = None
    rss_slope_mb_per_min: float | None = None
    rss_window_s: float = 0.0
    stored_per_s: float | None = None
    received_per_s: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    within_200ms: float | None = None
    backlog_max: int | None = None
    backlog_growth: float | None = None
    held: bool = False  # kept up: stored the asked rate, backlog not growing
    why_not: list[str] = field(default_factory=list)
    slow: bool = False  # p99 above BEHIND_P99_S (the TradeToCandleSlow alert's threshold)


def options_from_args(loads: str, duration: float | None, interval: float | None, quick: bool, out: Path | None,
                      beyond: bool, beyond_duration: float | None, max_load: float) -> SoakOptions:
    try:
        parsed = [float(x) for x in loads.split(",") if x.strip()]
    except ValueError as exc:
        raise SoakError(f"--loads takes trades per second separated by commas, e.g. 50,250,500: {exc}") from exc
    if not parsed or any(x <= 0 for x in parsed):
        raise SoakError("--loads needs at least one rate above 0 (trades per second), e.g. 50,250,500")
    duration_s = duration if duration is not None else (60.0 if quick else 600.0)
    interval_s = interval if interval is not None else (2.0 if quick else 5.0)
    if interval_s <= 0 or duration_s < 2 * interval_s:
        raise SoakError(f"--duration ({duration_s:g} s) must be at least two sampling intervals ({interval_s:g} s), "
                        "and the interval above 0")
    if beyond_duration is not None and beyond_duration < 2 * interval_s:
        raise SoakError("--beyond-duration must be at least two sampling intervals")
    if max_load <= 0:
        raise SoakError("--max-load must be above 0")
    out = out or Path(f"soak-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    return SoakOptions(parsed, duration_s, interval_s, out, beyond, beyond_duration, max_load)


def check_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise SoakError("the soak draws its chart with matplotlib, which is not installed: pip install "
                        "'ticklake[soak]' (or pip install 'matplotlib>=3.10,<4')")


class _Running:
    """A simulator process at ``load`` trades/s across the enabled venues and ``ticklake up`` over it."""

    def __init__(self, load: float, data_dir: Path, logs: Path, name: str) -> None:
        settings = Settings()
        markets = sum(len(v.symbols) for v in settings.venues.enabled().values())
        if not markets:
            raise SoakError("no venue is enabled: the soak needs markets to trade")
        env = {**os.environ, "TZ": "UTC", "TICKLAKE_SIMULATOR__TRADES_PER_SECOND": str(load / markets)}
        self.logs: list[IO[str]] = [(logs / f"{name}-{part}.log").open("w") for part in ("simulator", "platform")]
        self.platform: subprocess.Popen[str] | None = None
        simulator = start_simulator(env, stderr=self.logs[0])
        if simulator is None:
            for log in self.logs:
                log.close()
            raise SoakError(f"the simulator did not start: see {self.logs[0].name}")
        self.simulator = simulator
        self.port = free_port()
        env |= {"TICKLAKE_DATA_DIR": str(data_dir), "TICKLAKE_API__PORT": str(self.port)}
        self.platform = subprocess.Popen([sys.executable, "-m", "ticklake.cli", "up"], env=env,
                                         stdout=self.logs[1], stderr=subprocess.STDOUT, text=True)

    def wait_ready(self, timeout_s: float = 180.0) -> PlatformFigures:
        """Until the platform answers and has stored its first trades."""
        assert self.platform is not None
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            if self.platform.poll() is not None:
                raise SoakError(f"ticklake up exited with status {self.platform.returncode}: see {self.logs[1].name}")
            try:
                figures = read_platform(self.port, timeout=5.0)
                if figures.stored > 0:
                    return figures
                last = f"{figures.stored:g} trades stored"
            except OSError as exc:
                last = exc
            time.sleep(0.5)
        raise SoakError(f"the platform stored no trade within {timeout_s:g} s (last: {last}): see {self.logs[1].name}")

    def close(self) -> None:
        for process in (self.platform, self.simulator):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(90)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(30)
        for log in self.logs:
            log.close()


def _slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (x, y) points, or None with fewer than three."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


class _Sampler:
    """Samples one step, appending rows to the CSV; keeps what the verdicts need."""

    def __init__(self, running: _Running, result: StepResult, handle: IO[str], soak_started: float) -> None:
        self.running = running
        self.result = result
        self.handle = handle  # flushed after every sample: a soak cut short keeps what it measured
        self.writer = csv.DictWriter(handle, CSV_FIELDS)
        self.soak_started = soak_started
        self.rows: list[dict[str, Any]] = []
        self.steady: list[dict[str, Any]] = []  # per sample: platform totals in the steady window
        self.steady_start: PlatformFigures | None = None
        self.steady_start_at = 0.0
        self.last: PlatformFigures | None = None
        self.last_at = 0.0

    def run(self, duration_s: float, interval_s: float, first: PlatformFigures) -> None:
        assert self.running.platform is not None
        started = time.monotonic()
        previous_cpu = self._cpu()
        previous, previous_at = first, started
        tick = 1
        while True:
            wake = started + tick * interval_s
            if wake > started + duration_s + 1e-6:
                break
            time.sleep(max(0.0, wake - time.monotonic()))
            if self.running.platform.poll() is not None:
                raise SoakError(f"ticklake up exited during the step (status {self.running.platform.returncode}): "
                                f"see {self.running.logs[1].name}")
            now = time.monotonic()
            processes = [(role, p) for role, pid in (("platform", self.running.platform.pid),
                                                      ("simulator", self.running.simulator.pid))
                         for p in process_tree(pid, "ticklake up" if role == "platform" else "simulator")]
            try:
                figures: PlatformFigures | None = read_platform(self.running.port)
            except OSError:
                figures = None  # the platform did not answer in time: a gap in its figures, not in CPU/RSS
            dt = now - previous_at
            elapsed = now - started
            interval_figures = self._interval(previous, figures, dt)
            totals = {"platform_cpu": 0.0, "simulator_cpu": 0.0, "platform_rss": 0.0}
            cpu_now = {}
            for role, p in processes:
                cpu_now[p.pid] = p.cpu_s
                cores = (p.cpu_s - previous_cpu[p.pid]) / dt if p.pid in previous_cpu else None
                if cores is not None:
                    totals[f"{role}_cpu"] += cores
                if role == "platform":
                    totals["platform_rss"] += p.rss_mb
                row = {"time_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                       "elapsed_s": round(now - self.soak_started, 1), "step": self.result.step,
                       "load_per_s": f"{self.result.load_per_s:g}", "role": role, "process": p.name, "pid": p.pid,
                       "cpu_cores": "" if cores is None else round(cores, 4), "rss_mb": round(p.rss_mb, 1),
                       **interval_figures, "load_average_1m": round(os.getloadavg()[0], 2)}
                self.writer.writerow(row)
                self.rows.append(row)
            self.handle.flush()
            previous_cpu = cpu_now
            if figures is not None:
                previous, previous_at = figures, now
            self.result.samples += 1
            if elapsed >= self.result.steady_from_s - 1e-6:
                if self.steady_start is None and figures is not None:
                    self.steady_start, self.steady_start_at = figures, now
                self.steady.append({"at": elapsed, **totals,
                                    "backlog": None if figures is None else figures.backlog})
                if figures is not None:
                    self.last, self.last_at = figures, now
            tick += 1

    def _cpu(self) -> dict[int, float]:
        assert self.running.platform is not None
        return {p.pid: p.cpu_s for pid in (self.running.platform.pid, self.running.simulator.pid)
                for p in process_tree(pid, "")}

    @staticmethod
    def _interval(before: PlatformFigures, after: PlatformFigures | None, dt: float) -> dict[str, Any]:
        if after is None:
            return {"stored_per_s": "", "received_per_s": "", "latency_p50_ms": "", "latency_p99_ms": "",
                    "backlog": ""}
        p50 = quantile(before.latency_buckets, after.latency_buckets, 0.5)
        p99 = quantile(before.latency_buckets, after.latency_buckets, 0.99)
        return {"stored_per_s": round((after.stored - before.stored) / dt, 1),
                "received_per_s": round((after.received - before.received) / dt, 1),
                "latency_p50_ms": "" if p50 is None else round(p50 * 1000, 1),
                "latency_p99_ms": "" if p99 is None else round(p99 * 1000, 1),
                "backlog": "" if after.backlog is None else after.backlog}

    def conclude(self) -> None:
        r = self.result
        steady = self.steady
        if steady:
            r.platform_cores = round(sum(s["platform_cpu"] for s in steady) / len(steady), 4)
            r.simulator_cores = round(sum(s["simulator_cpu"] for s in steady) / len(steady), 4)
            r.platform_rss_mb = round(sum(s["platform_rss"] for s in steady) / len(steady), 1)
            r.rss_window_s = round(steady[-1]["at"] - steady[0]["at"], 1)
            slope = _slope([(s["at"] / 60, s["platform_rss"]) for s in steady])
            r.rss_slope_mb_per_min = None if slope is None else round(slope, 3)
            backlogs = [(s["at"], float(s["backlog"])) for s in steady if s["backlog"] is not None]
            if backlogs:
                r.backlog_max = int(max(b for _, b in backlogs))
                growth = _slope(backlogs)
                r.backlog_growth = None if growth is None else round(growth * (backlogs[-1][0] - backlogs[0][0]))
        start, end = self.steady_start, self.last
        if start is not None and end is not None and self.last_at > self.steady_start_at:
            seconds = self.last_at - self.steady_start_at
            r.stored_per_s = round((end.stored - start.stored) / seconds, 1)
            r.received_per_s = round((end.received - start.received) / seconds, 1)
            p50 = quantile(start.latency_buckets, end.latency_buckets, 0.5)
            p99 = quantile(start.latency_buckets, end.latency_buckets, 0.99)
            r.latency_p50_ms = None if p50 is None else round(p50 * 1000, 1)
            r.latency_p99_ms = None if p99 is None else round(p99 * 1000, 1)
            within = share_within(start.latency_buckets, end.latency_buckets, P99_LIMIT_MS_AT_10X / 1000)
            r.within_200ms = None if within is None else round(within, 5)
        if r.stored_per_s is None or r.stored_per_s < BEHIND_STORED_SHARE * r.load_per_s:
            r.why_not.append(f"stored {r.stored_per_s} trades/s of {r.load_per_s:g} asked")
        if r.backlog_growth is not None and r.backlog_growth > max(r.load_per_s * 1.0, 100):
            r.why_not.append(f"backlog grew by {r.backlog_growth:,.0f} messages over the steady window")
        r.held = not r.why_not
        r.slow = r.latency_p99_ms is not None and r.latency_p99_ms > BEHIND_P99_S * 1000


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # as Ctrl-C: the running step's processes are stopped on the way out


def run_soak(options: SoakOptions) -> int:
    check_matplotlib()
    from ticklake.bench.soak_chart import draw

    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{host.machine()}, {os.cpu_count()} cores, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
                   f"Python {host.python_version()}",
        "load_average_before": round(os.getloadavg()[0], 2),
        "options": {**asdict(options), "out": str(out)},
        "steps": [],
    }
    results: list[StepResult] = []
    soak_started = time.monotonic()
    with (out / "soak.csv").open("w", newline="") as handle, \
            tempfile.TemporaryDirectory(prefix="ticklake-soak-") as tmp:
        csv.DictWriter(handle, CSV_FIELDS).writeheader()
        loads = [(load, True) for load in options.loads]
        step = 0
        while step < len(loads):
            load, planned = loads[step]
            duration = options.duration_s if planned else (options.beyond_duration_s or options.duration_s)
            result = StepResult(step + 1, load, planned, duration, steady_from_s=duration / 3)
            print(f"soak: step {step + 1}, {load:g} trades/s for {duration:g} s{'' if planned else ' (beyond)'} ...",
                  file=sys.stderr, flush=True)
            running = _Running(load, Path(tmp) / f"step-{step + 1}", out, f"step-{step + 1}-{load:g}")
            try:
                first = running.wait_ready()
                sampler = _Sampler(running, result, handle, soak_started)
                sampler.run(duration, options.interval_s, first)
                sampler.conclude()
            finally:
                running.close()
            results.append(result)
            print(f"soak:   {_step_line(result)}", file=sys.stderr, flush=True)
            step += 1
            if step == len(loads) and options.beyond and all(r.held for r in results) \
                    and load * 2 <= options.max_load:
                loads.append((load * 2, False))
    report["load_average_after"] = round(os.getloadavg()[0], 2)
    report["steps"] = [asdict(r) for r in results]
    report["verdicts"] = verdicts(results)
    report["max_sustained"] = max_sustained(results, options)
    draw(out / "soak.csv", results, out / "soak.png")
    (out / "soak.json").write_text(json.dumps(report, indent=2))
    print("\n".join(report_lines(report, results)))
    return 1 if any(v["verdict"] == "MISSED" for v in report["verdicts"]) else 0


def verdicts(results: list[StepResult]) -> list[dict[str, Any]]:
    planned = [r for r in results if r.planned]
    found: list[dict[str, Any]] = []
    for r in planned:
        if r.rss_slope_mb_per_min is None or r.rss_window_s < RSS_MIN_WINDOW_S:
            verdict = "not judged"
            why = f"steady window {r.rss_window_s:g} s < {RSS_MIN_WINDOW_S:g} s: run longer steps"
        else:
            verdict = "met" if r.rss_slope_mb_per_min <= RSS_SLOPE_LIMIT_MB_PER_MIN else "MISSED"
            why = f"{r.rss_slope_mb_per_min:+.2f} MB/min over {r.rss_window_s:g} s (limit {RSS_SLOPE_LIMIT_MB_PER_MIN})"
        found.append({"criterion": f"no RSS growth at {r.load_per_s:g} trades/s", "verdict": verdict, "figure": why})
    if planned:
        last = planned[-1]
        p99 = last.latency_p99_ms
        found.append({"criterion": f"trade -> candle p99 <= {P99_LIMIT_MS_AT_10X:g} ms at {last.load_per_s:g} trades/s",
                      "verdict": "not judged" if p99 is None else ("met" if p99 <= P99_LIMIT_MS_AT_10X else "MISSED"),
                      "figure": f"p99 {p99} ms, p50 {last.latency_p50_ms} ms; "
                                f"{(last.within_200ms or 0):.2%} of trades within 200 ms"})
        first = planned[0]
        cores = first.platform_cores
        found.append({"criterion": f"the whole platform under {CORES_LIMIT_AT_1X:g} of a core at "
                                   f"{first.load_per_s:g} trades/s",
                      "verdict": "not judged" if cores is None else ("met" if cores < CORES_LIMIT_AT_1X else "MISSED"),
                      "figure": f"{cores} cores"})
    return found


def max_sustained(results: list[StepResult], options: SoakOptions) -> dict[str, Any]:
    held: StepResult | None = None
    behind: StepResult | None = None
    for r in sorted(results, key=lambda r: r.load_per_s):
        if not r.held:
            behind = r
            break
        held = r
    return {"held_load_per_s": held.load_per_s if held else None,
            "held_stored_per_s": held.stored_per_s if held else None,
            "behind_load_per_s": behind.load_per_s if behind else None,
            "behind_why": behind.why_not if behind else [],
            "capped": behind is None and options.beyond,
            "simulator_saturated": bool(behind and (behind.simulator_cores or 0) >= 0.9)}


def _step_line(r: StepResult) -> str:
    return (f"{r.load_per_s:>7,.0f} asked, {r.stored_per_s or 0:>8,.1f} stored/s: platform {r.platform_cores} cores, "
            f"RSS {r.platform_rss_mb} MB ({r.rss_slope_mb_per_min:+} MB/min), p50 {r.latency_p50_ms} ms, "
            f"p99 {r.latency_p99_ms} ms, backlog max {r.backlog_max} (growth {r.backlog_growth}); simulator "
            f"{r.simulator_cores} cores; {'kept up' if r.held else 'BEHIND: ' + '; '.join(r.why_not)}"
            f"{'; p99 above the TradeToCandleSlow alert (1 s)' if r.slow else ''}"
            if r.rss_slope_mb_per_min is not None else
            f"{r.load_per_s:>7,.0f} asked: too few samples ({r.samples})")


def report_lines(report: dict[str, Any], results: list[StepResult]) -> list[str]:
    lines = [f"ticklake soak — {report['date']} — {report['machine']} — load average {report['load_average_before']} "
             f"before, {report['load_average_after']} after", "",
             "steps (figures over each step's steady window, its last two thirds):"]
    lines += [f"  {r.step:>2}{'' if r.planned else ' beyond'}: {_step_line(r)}" for r in results]
    lines += ["", "pass criteria:"]
    lines += [f"  {v['verdict']:>10}  {v['criterion']}: {v['figure']}" for v in report["verdicts"]]
    m = report["max_sustained"]
    if m["held_load_per_s"] is None:
        sustained = "no step held"
    else:
        sustained = (f"{m['held_load_per_s']:,.0f} trades/s asked ({m['held_stored_per_s']:,.1f} stored/s) held")
    if m["behind_load_per_s"] is not None:
        sustained += (f"; the platform falls behind at {m['behind_load_per_s']:,.0f} trades/s asked ("
                      f"{'; '.join(m['behind_why'])})")
        if m["simulator_saturated"]:
            sustained += "; the simulator used a whole core there: the load generator may be the limit"
    elif m["capped"]:
        sustained += " (the soak stopped at --max-load before anything fell behind)"
    else:
        sustained += " (no step beyond the planned loads was run: --no-beyond)"
    out = Path(report["options"]["out"])
    lines += ["", f"maximum sustained rate on this machine: {sustained}", "",
              f"files: {out / 'soak.csv'}, {out / 'soak.png'}, {out / 'soak.json'}"]
    return lines
