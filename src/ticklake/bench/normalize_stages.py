"""Stage 1 of ``ticklake bench``, in the bench process: each venue's mapper against a bare JSON decode
of the same frames, recorded from the simulator; then with the per-trade bookkeeping (gap tracking, the
writer's in-batch dedup) on top, as its overhead over the bare parse.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec
import orjson

from ticklake.settings import Settings


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


def run_normalize_stage(workdir: Path, seconds: float) -> dict[str, Any]:
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


