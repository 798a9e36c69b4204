"""Benchmark stage of the completeness check (stage 8 of ``ticklake bench``). Like ``stages``, it runs
in its own process (chdb opens one data path per process) and prints one JSON object on its last line.

    python -m ticklake.bench.completeness_stages check PATH TRADES MARKETS DAYS

``check``: DAYS days of TRADES stored trades over MARKETS markets (about one id in 100,000 missing),
generated inside ClickHouse; then, for windows of 15 minutes to a day, the check's two queries (the
holes, ``queries/stored_gaps.sql``; silver against the 1m candles, ``queries/minute_window_counts.sql``)
against a bare count of the same window's trades (the floor: reading them), median of 5 after one
untimed run.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import UTC, datetime
from importlib import resources as package_files
from typing import Any

from ticklake.warehouse import migrate
from ticklake.warehouse.client import open_client
from ticklake.warehouse.sql import query, split_statements

WINDOWS_S = (900, 3600, 6 * 3600, 86_400)
HOLE_EVERY = 100_000
CHUNK = 500_000  # rows a generating insert (the gold view's memory)
WINDOW_COUNT = "SELECT count() FROM silver_trades WHERE exchange IN {exchanges:Array(String)} " \
               "AND ts >= {since:DateTime64(6, 'UTC')} AND ts < {until:DateTime64(6, 'UTC')}"


def _median_ms(run: Any, rounds: int = 5) -> tuple[float, Any]:
    result = run()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 1), result


def check(path: str, trades: int, markets: int, days: float) -> dict[str, Any]:
    client = open_client(f"chdb://{path}", "bench")
    migrate.upgrade(client)
    now_us = time.time_ns() // 1000
    step_us = int(days * 86_400_000_000 * markets / trades)
    sql = split_statements((package_files.files("ticklake.bench") / "generate_silver.sql").read_text("utf-8"))[0]
    started = time.perf_counter()
    for offset in range(0, trades, CHUNK):
        client.command(sql, parameters={"count": trades, "symbols": markets, "step_us": step_us, "end_us": now_us,
                                        "hole_every": HOLE_EVERY, "offset": offset,
                                        "chunk": min(CHUNK, trades - offset)})
    client.command("OPTIMIZE TABLE silver_trades FINAL")  # merged parts, as a table some hours old has
    generated_s = time.perf_counter() - started
    stored = int(client.query("SELECT count() FROM silver_trades").result_rows[0][0])
    windows = []
    for window_s in WINDOWS_S:
        if window_s > days * 86_400:
            continue
        since = datetime.fromtimestamp(now_us / 1e6 - window_s, UTC)
        until = datetime.fromtimestamp(now_us / 1e6 - 60, UTC)
        params = {"exchanges": ["binance"], "since": since, "until": until}
        holes_ms, holes = _median_ms(lambda p=params: client.query(query("stored_gaps"), parameters=p).result_rows)
        minutes = {**params, "since": since.replace(second=0, microsecond=0),
                   "until": until.replace(second=0, microsecond=0)}
        gold_ms, short = _median_ms(lambda p=minutes: client.query(query("minute_window_counts"),
                                                                  parameters=p).result_rows)
        count_ms, counted = _median_ms(lambda p=params: client.query(WINDOW_COUNT, parameters=p).result_rows)
        check_ms = round(holes_ms + gold_ms, 1)
        windows.append({"window_s": window_s, "trades_in_window": int(counted[0][0]), "holes_found": len(holes),
                        "short_minutes": len(short), "holes_ms": holes_ms, "gold_ms": gold_ms, "check_ms": check_ms,
                        "count_ms": count_ms, "share_of_warehouse_thread_at_60s": round(check_ms / 60_000, 5)})
    client.close()
    return {"trades": stored, "markets": markets, "days": days, "generated_s": round(generated_s, 1),
            "windows": windows}


if __name__ == "__main__":
    stage, path = sys.argv[1], sys.argv[2]
    if stage == "check":
        print(json.dumps(check(path, int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))))
    else:
        raise SystemExit(f"unknown stage {stage}")
