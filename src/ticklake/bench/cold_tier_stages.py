"""Stage 7 of ``ticklake bench``, the cold tier, as the bench process runs it: ``lake_stages.py``'s
commands (offload, year, compact), each in a process of its own, and a year of 1h candles fetched over
HTTP from its ``serve``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ticklake.bench import _stage
from ticklake.bench.serving_stages import connect, peak_rss_mb_of
from ticklake.drill.services import free_port
from ticklake.settings import Settings

LAKE_STAGES = "ticklake.bench.lake_stages"


def run_cold_tier_stage(workdir: Path, sizes: dict[str, Any]) -> dict[str, Any]:
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
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", LAKE_STAGES, "serve", path, str(port), str(year["end"])],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "TZ": "UTC"})
    limit = Settings().api.max_limit
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "serving"
        connection = connect(port)

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
        rss = peak_rss_mb_of(server.pid)
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


