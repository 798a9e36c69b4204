"""A separate process for the crash tests: writes batches until killed, or checks and repairs.

    python -m tests.warehouse.crash_worker write PATH ROUND   # write Binance frames forever
    python -m tests.warehouse.crash_worker check PATH         # repair, then print a JSON report

It is a separate process because the test kills it with SIGKILL, and because chdb opens one data
path per process.
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import orjson

from tests.factories import BASE_US, recompute_candles
from ticklake.exchanges.mappers import parser_for
from ticklake.model import RawFrame, Trade
from ticklake.settings import ValidationSettings
from ticklake.warehouse import migrate
from ticklake.warehouse.client import open_client
from ticklake.warehouse.reader import TIMEFRAMES, WarehouseReader
from ticklake.warehouse.repair import repair
from ticklake.warehouse.writer import WarehouseWriter

SYMBOLS = ("BTCUSDT", "ETHUSDT")
VALIDATION = ValidationSettings(max_age_days=3650)
parse = parser_for("binance")


def frame_payload(symbol: str, trade_id: int, rng: random.Random) -> tuple[str, int]:
    ts_ms = BASE_US // 1000 + trade_id // 7  # several trades share a millisecond
    price = "0" if rng.random() < 0.01 else f"{rng.randint(1000, 1100)}.{rng.randint(0, 99):02d}"
    event = {"e": "trade", "E": ts_ms, "s": symbol, "t": trade_id, "p": price, "q": f"0.{rng.randint(1, 999):03d}",
             "T": ts_ms, "m": rng.random() < 0.5, "M": True}
    return orjson.dumps({"stream": f"{symbol.lower()}@trade", "data": event}).decode(), ts_ms * 1000


def write_forever(path: str, round_number: int) -> None:
    client = open_client(f"chdb://{path}", "ticklake")
    migrate.upgrade(client)
    writer = WarehouseWriter(client, VALIDATION)
    rng = random.Random(round_number)
    conn_id = f"crash-{round_number}"
    next_id = round_number * 1_000_000
    seq = 0
    previous: list[tuple[RawFrame, list[Trade]]] = []
    print("ready", flush=True)
    while True:
        batch: list[tuple[RawFrame, list[Trade]]] = []
        for _ in range(rng.randint(20, 400)):
            seq += 1
            next_id += 1
            payload, ts_us = frame_payload(rng.choice(SYMBOLS), next_id, rng)
            received_us = ts_us + 1000
            parsed = parse(payload, received_us, conn_id, seq)
            raw = RawFrame("binance", conn_id, seq, received_us, payload, parsed.error, len(parsed.trades))
            batch.append((raw, list(parsed.trades)))
        # Overlap with the previous batch, as a reconnect snapshot would: must not double-count.
        overlap = [trade for _, trades in previous[-5:] for trade in trades]
        writer.write([raw for raw, _ in batch], [t for _, trades in batch for t in trades] + overlap)
        previous = batch
        print("batch", flush=True)


def check(path: str) -> None:
    client = open_client(f"chdb://{path}", "ticklake")
    migrate.upgrade(client)
    writer = WarehouseWriter(client, VALIDATION)
    repaired = repair(writer, timedelta(days=1))
    again = repair(writer, timedelta(days=1))

    frames = client.query("SELECT conn_id, frame_seq, toUnixTimestamp64Micro(received_at), payload FROM raw_frames")
    from_raw = {(t.exchange, t.native_symbol, t.trade_id)
                for conn_id, seq, received, payload in frames.result_rows
                for t in parse(payload, int(received), conn_id, int(seq)).trades}
    bronze = Counter((e, n, int(i)) for e, n, i in client.query(
        "SELECT exchange, native_symbol, trade_id FROM bronze_trades").result_rows)
    silver_rows = client.query(
        "SELECT exchange, symbol, native_symbol, trade_id, toString(price), toString(qty), toString(side), "
        "toUnixTimestamp64Micro(ts) FROM silver_trades").result_rows
    silver = Counter((r[0], r[2], int(r[3])) for r in silver_rows)
    dead = Counter((e, n, int(i)) for e, n, i in client.query(
        "SELECT exchange, native_symbol, trade_id FROM dead_letters").result_rows)

    reader = WarehouseReader(client)
    trades = [Trade(r[0], r[1], r[2], int(r[3]), r[4], r[5], r[6], int(r[7]), 0) for r in silver_rows]
    candle_mismatches = 0
    for name, seconds in TIMEFRAMES.items():
        expected = recompute_candles(trades, seconds)
        stored = {}
        for symbol in ("BTC/USDT", "ETH/USDT"):
            for c in reader.ohlcv("binance", symbol, name, None, None, 100_000):
                stored[("binance", symbol, int(c.start.timestamp()))] = (
                    c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades)
        wanted = {k: (c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades)
                  for k, c in expected.items()}
        candle_mismatches += sum(1 for k in wanted.keys() | stored.keys() if wanted.get(k) != stored.get(k))

    rounds = Counter(i // 1_000_000 for _, _, i in bronze)
    print(json.dumps({
        "repaired": repaired, "repaired_again": again,
        "raw_trades": len(from_raw), "bronze": sum(bronze.values()), "bronze_unique": len(bronze),
        "bronze_equals_raw": set(bronze) == from_raw,
        "silver": sum(silver.values()), "silver_unique": len(silver), "dead": sum(dead.values()),
        "silver_and_dead_cover_bronze": set(silver) | set(dead) == set(bronze) and not (set(silver) & set(dead)),
        "candle_mismatches": candle_mismatches, "rounds_with_data": sorted(rounds),
        "volume": str(sum((Decimal(t.qty) for t in trades), Decimal(0))),
    }))


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write_forever(sys.argv[2], int(sys.argv[3]))
    else:
        check(sys.argv[2])
