"""What ``ticklake soak`` reads from outside a running platform, as an operator's tools would: each
process's CPU and memory from ``/proc``, and the platform's own figures from its ``/metrics`` (the
trade -> candle histogram, the stored-trade counter) and ``/health`` (the embedded bus's backlog).

Nothing here touches the platform's code path: a sample is two HTTP requests and a few ``/proc`` reads.
"""

from __future__ import annotations

import http.client
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

_TICK = os.sysconf("SC_CLK_TCK")
LATENCY = "ticklake_trade_to_candle_seconds"
STORED = "ticklake_ingest_rows"  # label table="silver_trades": trades stored
RECEIVED = "ticklake_feed_trades"  # per exchange: trades the feeds normalized


@dataclass(frozen=True)
class ProcessTimes:
    pid: int
    name: str
    cpu_s: float  # user + system, all threads
    rss_mb: float


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid``: the cold tier's worker process of ``ticklake up`` while it runs
    (lake/worker.py), counted with the platform."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def process_times(pid: int, name: str) -> ProcessTimes | None:
    """CPU seconds so far and resident memory of one process, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    rss_kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return ProcessTimes(pid, name, (int(fields[11]) + int(fields[12])) / _TICK, rss_kb / 1024)


def process_tree(pid: int, name: str) -> list[ProcessTimes]:
    """A process and its descendants (each named after the command it runs, under ``name``)."""
    tree = [process_times(pid, name)]
    for child in _children(pid):
        try:
            comm = Path(f"/proc/{child}/comm").read_text().strip()
        except OSError:
            continue
        tree.append(process_times(child, f"{name}/{comm}"))
    return [p for p in tree if p is not None]


@dataclass
class PlatformFigures:
    """One reading of the platform's own counters (cumulative since it started)."""

    latency_buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    latency_count: float = 0.0
    stored: float = 0.0
    received: float = 0.0
    backlog: int | None = None


def _get(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def read_platform(port: int, timeout: float = 10.0) -> PlatformFigures:
    """``/metrics`` and ``/health`` of a platform serving its API on ``port`` (OSError if it does not answer)."""
    figures = PlatformFigures()
    _status, body = _get(port, "/metrics", timeout)
    for family in text_string_to_metric_families(body.decode()):
        if family.name == LATENCY:
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    figures.latency_buckets[float(sample.labels["le"])] = sample.value
                elif sample.name.endswith("_count"):
                    figures.latency_count = sample.value
        elif family.name == STORED:
            figures.stored = sum(s.value for s in family.samples
                                 if s.name.endswith("_total") and s.labels.get("table") == "silver_trades")
        elif family.name == RECEIVED:
            figures.received = sum(s.value for s in family.samples if s.name.endswith("_total"))
    # /health answers 503 when a component is down; its body still says the bus's depth.
    _status, body = _get(port, "/health", timeout)
    try:
        depth = json.loads(body)["components"]["bus"].get("depth")
    except (ValueError, KeyError, TypeError):
        depth = None
    figures.backlog = int(depth) if isinstance(depth, int | float) else None
    return figures


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The ``q`` quantile (seconds) of what a cumulative histogram observed between two readings,
    interpolated linearly inside the bucket it falls in (as PromQL's histogram_quantile does); None when
    nothing was observed. Beyond the last finite bound, that bound is returned."""
    bounds = sorted(after)
    deltas = [after[b] - before.get(b, 0.0) for b in bounds]
    total = deltas[-1] if deltas else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, deltas, strict=True):
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, cumulative
    return lower


def share_within(before: dict[float, float], after: dict[float, float], bound: float) -> float | None:
    """The share of observations between two readings at or below ``bound`` (one of the buckets)."""
    total = after.get(float("inf"), 0.0) - before.get(float("inf"), 0.0)
    if total <= 0 or bound not in after:
        return None
    return (after[bound] - before.get(bound, 0.0)) / total
