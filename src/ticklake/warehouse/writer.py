"""Writing batches through the layers: raw -> bronze -> dead letters | silver -> (view) -> gold.

Exactly once, in three steps:

1. **Plan.** Drop trades bronze already holds, before anything is inserted: ClickHouse's
   ReplacingMergeTree deduplicates only at merge time, after the gold view has already counted a
   duplicate (stack.md, pitfall 1). Trades above the newest stored id of their market are new without
   a lookup; the rest (reconnect snapshots, out-of-order frames, backfill) are looked up in bronze.
2. **Insert** raw frames, bronze, dead letters, silver, in that order, each with an
   ``insert_deduplication_token`` fixed by the plan, so a retried batch is stored once even in the
   view's target.
3. **Remember** the new newest ids only once every insert succeeded.

A crash between inserts leaves the lower layers ahead of the higher ones; ``repair`` finds and
re-derives what is missing at the next start.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from ticklake.exchanges.backfill import from_rest
from ticklake.model import BusReject, Message, RawFrame, Trade
from ticklake.ops import metrics
from ticklake.settings import ValidationSettings
from ticklake.times import utc_from_us
from ticklake.warehouse import arrow
from ticklake.warehouse.changes import StoredChanges
from ticklake.warehouse.gold import recheck_gold
from ticklake.warehouse.sql import query
from ticklake.warehouse.validation import MAX_TIMESTAMP_US, UINT64_MAX, Validator

log = logging.getLogger(__name__)

NativeMarket = tuple[str, str]  # (exchange, the venue's own symbol); a canonical one is changes.Market
Origin = tuple[str, int, int]  # where a message was read: (topic, partition, offset)
NO_ORIGIN: Origin = ("", -1, -1)
# Lower layers first: a crash between inserts leaves a higher layer behind, never ahead (see repair).
# The bus positions go last: once they are stored, everything before them is.
INSERT_ORDER = ("raw_frames", "bronze_trades", "dead_letters", "silver_trades", "bus_dead_letters")


def _group_offsets(origins: Iterable[Origin]) -> dict[tuple[str, int], list[int]]:
    grouped: dict[tuple[str, int], list[int]] = {}
    for topic, partition, offset in origins:
        grouped.setdefault((topic, partition), []).append(offset)
    return grouped


@dataclass
class Plan:
    """What one batch will insert into each table, decided (and built as Arrow tables) before the
    first insert, so a retried commit sends exactly the same rows."""

    token: str
    frames: list[RawFrame] = field(default_factory=list)
    bronze: list[Trade] = field(default_factory=list)
    silver: list[Trade] = field(default_factory=list)
    dead: list[tuple[Trade, str, str, str]] = field(default_factory=list)
    duplicates: int = 0
    new_max_ids: dict[NativeMarket, int] = field(default_factory=dict)
    tables: dict[str, pa.Table] = field(default_factory=dict)
    rejects: list[tuple[Origin, BusReject]] = field(default_factory=list)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset per topic partition
    gold_check: list[Trade] = field(default_factory=list)  # replayed trades silver already held
    committed_us: int = 0  # this batch's place in silver's commit order (migration 0006; 0 without it)


def split_batch(trades: Iterable[Trade]) -> tuple[dict[NativeMarket, list[Trade]], list[Trade], list[Trade]]:
    """A batch's trades by market, without repeats inside the batch: (by market, unstorable, repeats).

    The first step of deduplication, in memory; the second asks bronze about ids at or below the
    newest it holds. (It runs for every trade: one dict per market keyed by id is the cheapest form.)
    """
    markets: dict[NativeMarket, dict[int, Trade]] = {}
    unstorable: list[Trade] = []
    repeated: list[Trade] = []
    for trade in trades:
        trade_id = trade.trade_id
        # Bronze's columns must hold the id and both times; Validator.check names the rule for those
        # that do not (bad_trade_id, bad_timestamp).
        if not (0 <= trade_id <= UINT64_MAX and 0 <= trade.ts_us < MAX_TIMESTAMP_US
                and 0 <= trade.received_us < MAX_TIMESTAMP_US):
            unstorable.append(trade)  # cannot be a bronze row: straight to dead letters
            continue
        key = (trade.exchange, trade.native_symbol)
        market = markets.get(key)
        if market is None:
            markets[key] = {trade_id: trade}
        elif trade_id in market:
            repeated.append(trade)
        else:
            market[trade_id] = trade
    return {key: list(market.values()) for key, market in markets.items()}, unstorable, repeated


class WarehouseWriter:
    """Writes batches through the layers; ``changes`` (when given) learns the markets of every batch
    stored, for readers that keep answers (warehouse/changes.py)."""

    def __init__(self, client: Client, validation: ValidationSettings, changes: StoredChanges | None = None) -> None:
        self.client = client
        self.changes = changes
        self.validator = Validator(validation)
        self._max_ids: dict[NativeMarket, int] | None = None
        # Silver's commit order (migration 0006), where the schema has it: increasing per batch.
        self._commit_order = bool(self.client.query(query("has_commit_order")).result_rows[0][0])
        self._last_commit_us = 0

    # -- plan ----------------------------------------------------------------------------------
    def _stored_max_ids(self) -> dict[NativeMarket, int]:
        if self._max_ids is None:
            rows = self.client.query(query("max_trade_ids")).result_rows
            self._max_ids = {(exchange, native): int(max_id) for exchange, native, max_id in rows}
        return self._max_ids

    def forget_state(self) -> None:
        """Reload the newest stored ids from bronze at the next batch (after repair or rollback)."""
        self._max_ids = None

    def _already_stored(self, key: NativeMarket, ids: list[int]) -> set[int]:
        rows = self.client.query(
            query("stored_trade_ids"),
            parameters={"exchange": key[0], "native_symbol": key[1], "low": min(ids), "high": max(ids),
                        "ids": ids},
        ).result_rows
        return {int(row[0]) for row in rows}

    def plan(self, frames: Sequence[RawFrame], trades: Iterable[Trade]) -> Plan:
        """A plan for records that did not come through a Kafka bus (embedded bus, replay, repair)."""
        return self._plan(frames, [], trades, {}, set(), [])

    def plan_messages(self, messages: Sequence[Message]) -> Plan:
        """A plan for one batch from the bus. Messages from a Kafka topic carry their position, which
        is stored with the rows and, last, in ``bus_positions``; a message marked ``replayed`` may be
        partly stored already (a crash between this batch's inserts), so what it would add is looked
        up first, and the rows it already has are completed instead of stored again."""
        frames: list[RawFrame] = []
        frame_origins: list[Origin] = []
        trades: list[Trade] = []
        trade_origins: dict[int, Origin] = {}
        replayed: set[int] = set()
        rejects: list[tuple[Origin, BusReject]] = []
        positions: dict[tuple[str, int], int] = {}
        replayed_elsewhere: list[Origin] = []  # replayed frames and rejects: stored whole, or not at all
        for message in messages:
            value = message.value
            origin = (message.topic, message.partition, message.offset)
            if message.partition >= 0:
                key = (message.topic, message.partition)
                positions[key] = max(positions.get(key, 0), message.offset + 1)
                if message.replayed:
                    metrics.BUS_REPLAYED.labels(message.topic).inc()
            if isinstance(value, Trade):
                trades.append(value)
                trade_origins[id(value)] = origin
                if message.replayed:
                    replayed.add(id(value))
                continue
            if message.replayed:
                replayed_elsewhere.append(origin)
            if isinstance(value, RawFrame):
                frames.append(value)
                frame_origins.append(origin)
            else:
                rejects.append((origin, value))
        if not positions:  # the embedded bus: no positions to store with the rows
            trade_origins, frame_origins = {}, []
        if replayed_elsewhere:
            stored = self._stored_positions(replayed_elsewhere)
            kept = [(f, o) for f, o in zip(frames, frame_origins, strict=True) if o not in stored]
            frames, frame_origins = [f for f, _ in kept], [o for _, o in kept]
            rejects = [(origin, reject) for origin, reject in rejects if origin not in stored]
        plan = self._plan(frames, frame_origins, trades, trade_origins, replayed, rejects)
        plan.positions = positions
        if positions:
            plan.tables["bus_positions"] = arrow.bus_positions(positions)
        return plan

    def _plan(self, frames: Sequence[RawFrame], frame_origins: Sequence[Origin], trades: Iterable[Trade],
              trade_origins: dict[int, Origin], replayed: set[int],
              rejects: Sequence[tuple[Origin, BusReject]]) -> Plan:
        plan = Plan(token=uuid.uuid4().hex, frames=list(frames))
        max_ids = self._stored_max_ids()
        by_market, unstorable, repeated = split_batch(trades)
        plan.duplicates += len(repeated)
        for trade in repeated:
            metrics.INGEST_DUPLICATES.labels(trade.exchange).inc()

        completing: list[Trade] = []  # stored in bronze by an interrupted attempt at this very batch
        refetched: list[Trade] = []  # backfilled trades bronze holds: silver may not (see below)
        for key, market_trades in by_market.items():
            newest = max_ids.get(key, -1)
            maybe_stored = [t.trade_id for t in market_trades if t.trade_id <= newest]
            if not maybe_stored:
                plan.bronze.extend(market_trades)
            elif replayed and any(id(t) in replayed for t in market_trades):
                origins = self._stored_origins(key, maybe_stored)
                for trade in market_trades:
                    stored_origin = origins.get(trade.trade_id)
                    if stored_origin is None:
                        plan.bronze.append(trade)
                    elif stored_origin == trade_origins.get(id(trade)):
                        completing.append(trade)
                    else:
                        plan.duplicates += 1
                        metrics.INGEST_DUPLICATES.labels(trade.exchange).inc()
            else:
                stored = self._already_stored(key, maybe_stored)
                for trade in market_trades:
                    if trade.trade_id not in stored:
                        plan.bronze.append(trade)
                    elif from_rest(trade.conn_id):
                        refetched.append(trade)
                    else:
                        plan.duplicates += 1
                        metrics.INGEST_DUPLICATES.labels(trade.exchange).inc()
            top = max(t.trade_id for t in market_trades)
            if top > newest:
                plan.new_max_ids[key] = top

        # Trades an interrupted attempt put in bronze: on to silver (or dead letters) unless they got
        # there too; where they did, their gold windows are checked after the inserts.
        missing, landed = self._split_by_silver(completing)
        plan.gold_check = landed
        # A backfill fetched a trade bronze already holds: a duplicate, unless it never reached silver
        # or dead letters (a batch cut short whose messages the broker then lost: nothing replays it).
        # The completeness check finds such holes in silver and has them fetched; they are completed
        # here. Gold counts nothing that silver lacks, so there is no window to re-check.
        unfinished, duplicates = self._split_by_silver(refetched)
        plan.duplicates += len(duplicates)
        for trade in duplicates:
            metrics.INGEST_DUPLICATES.labels(trade.exchange).inc()
        derived = [*plan.bronze, *missing, *unfinished]
        table = arrow.bronze(derived) if derived else None
        self._validate_into(plan, derived, table, unstorable)
        if plan.frames:
            plan.tables["raw_frames"] = arrow.raw_frames(plan.frames, frame_origins or None)
        if plan.bronze and table is not None:
            bronze = table.slice(0, len(plan.bronze))
            if trade_origins:
                bronze = arrow.with_origins(bronze, [trade_origins.get(id(t), NO_ORIGIN) for t in plan.bronze])
            plan.tables["bronze_trades"] = bronze
        if rejects:
            plan.rejects = list(rejects)
            plan.tables["bus_dead_letters"] = arrow.bus_dead_letters(rejects)
        return plan

    def _stored_origins(self, key: NativeMarket, ids: list[int]) -> dict[int, Origin]:
        rows = self.client.query(
            query("stored_trade_origins"),
            parameters={"exchange": key[0], "native_symbol": key[1], "low": min(ids), "high": max(ids),
                        "ids": ids},
        ).result_rows
        return {int(trade_id): (topic, int(partition), int(offset)) for trade_id, topic, partition, offset in rows}

    def _split_by_silver(self, trades: Sequence[Trade]) -> tuple[list[Trade], list[Trade]]:
        """(trades in neither silver nor dead letters, trades already in one of them)."""
        if not trades:
            return [], []
        present: set[tuple[str, str, int]] = set()
        by_market: dict[NativeMarket, list[Trade]] = {}
        for trade in trades:
            by_market.setdefault((trade.exchange, trade.native_symbol), []).append(trade)
        for (exchange, native_symbol), market_trades in by_market.items():
            times = [t.ts_us for t in market_trades]
            rows = self.client.query(
                query("derived_trade_ids"),
                parameters={"exchange": exchange, "native_symbol": native_symbol,
                            "ids": [t.trade_id for t in market_trades],
                            "low": utc_from_us(min(times)), "high": utc_from_us(max(times))},
            ).result_rows
            present.update((exchange, native_symbol, int(row[0])) for row in rows)
        missing = [t for t in trades if (t.exchange, t.native_symbol, t.trade_id) not in present]
        landed = [t for t in trades if (t.exchange, t.native_symbol, t.trade_id) in present]
        return missing, landed

    def _stored_positions(self, origins: list[Origin]) -> set[Origin]:
        """Which of these bus positions a raw frame or a bus dead letter is already stored from."""
        stored: set[Origin] = set()
        for (topic, partition), offsets in _group_offsets(origins).items():
            rows = self.client.query(query("stored_message_offsets"), parameters={
                "topic": topic, "partition": partition, "low": min(offsets), "high": max(offsets)}).result_rows
            stored.update((topic, partition, int(row[0])) for row in rows)
        return stored

    def plan_from_bronze(self, trades: Sequence[Trade]) -> Plan:
        """A plan for trades already in bronze that never reached silver or dead letters (repair)."""
        plan = Plan(token=uuid.uuid4().hex)
        self._validate_into(plan, trades, arrow.bronze(trades) if trades else None, [])
        return plan

    def _validate_into(self, plan: Plan, trades: Sequence[Trade], table: pa.Table | None,
                       unstorable: Sequence[Trade]) -> None:
        decimals = self.validator.all_valid(table) if table is not None else None
        if decimals is not None and table is not None:
            # The common case: every row is valid, and the columns are already built.
            plan.silver = list(trades)
            plan.tables["silver_trades"] = arrow.with_decimals(table, *decimals)
            self._dead_letters(plan, unstorable)
        else:
            self._dead_letters(plan, [*trades, *unstorable])
            if plan.silver:
                plan.tables["silver_trades"] = arrow.silver(plan.silver)
        silver = plan.tables.get("silver_trades")
        if silver is not None and self._commit_order:
            # Fixed in the plan, so that a retried commit stores the same value.
            plan.committed_us = self._last_commit_us = max(time.time_ns() // 1000, self._last_commit_us + 1)
            plan.tables["silver_trades"] = silver.append_column(
                "committed_us", pa.array([plan.committed_us] * silver.num_rows, pa.uint64()))

    def _dead_letters(self, plan: Plan, trades: Sequence[Trade]) -> None:
        """Check ``trades`` one by one: valid ones join silver, the others become dead letters."""
        payloads = {(f.conn_id, f.frame_seq): f.payload for f in plan.frames}
        for trade in trades:
            violation = self.validator.check(trade)
            if violation is None:
                plan.silver.append(trade)
            else:
                raw = payloads.get((trade.conn_id, trade.frame_seq))
                if raw is None:
                    raw = self._raw_payload(trade.conn_id, trade.frame_seq)
                plan.dead.append((trade, violation.rule, violation.detail, raw))
        if plan.dead:
            plan.tables["dead_letters"] = arrow.dead_letters(plan.dead)

    def _raw_payload(self, conn_id: str, frame_seq: int) -> str:
        rows = self.client.query(query("raw_frame"), parameters={"conn_id": conn_id, "frame_seq": frame_seq})
        return str(rows.result_rows[0][0]) if rows.result_rows else ""

    # -- insert --------------------------------------------------------------------------------
    def _insert(self, plan: Plan) -> None:
        for table in INSERT_ORDER:
            self._insert_table(plan, table)
        if plan.gold_check:
            # An interrupted attempt may have stopped inside the gold view (stack.md, pitfall 2).
            recheck_gold(self.client, plan.gold_check)
        self._insert_table(plan, "bus_positions")

    def _insert_table(self, plan: Plan, table: str) -> None:
        rows = plan.tables.get(table)
        if rows is not None:
            self.client.insert_arrow(table, rows, settings={"insert_deduplication_token": f"{plan.token}-{table}"})

    def commit(self, plan: Plan) -> None:
        """Insert a plan. On failure, commit the *same* plan again: its tokens make that safe."""
        started = time.perf_counter()
        try:
            self._insert(plan)
        except Exception:
            metrics.INGEST_ERRORS.inc()
            raise
        if self._max_ids is not None:
            self._max_ids.update(plan.new_max_ids)
        if self.changes is not None:
            self.changes.touch((t.exchange, t.symbol) for t in (*plan.silver, *plan.gold_check))
        metrics.INGEST_FLUSH_SECONDS.observe(time.perf_counter() - started)
        metrics.INGEST_ROWS.labels("raw_frames").inc(len(plan.frames))
        metrics.INGEST_ROWS.labels("bronze_trades").inc(len(plan.bronze))
        metrics.INGEST_ROWS.labels("silver_trades").inc(len(plan.silver))
        metrics.INGEST_ROWS.labels("dead_letters").inc(len(plan.dead))
        for trade, rule, _detail, _raw in plan.dead:
            metrics.DEAD_LETTERS.labels(trade.exchange, rule).inc()
        for (topic, _partition, _offset), reject in plan.rejects:
            metrics.BUS_REJECTED.labels(topic, reject.reason).inc()

    def write(self, frames: Sequence[RawFrame], trades: Iterable[Trade]) -> Plan:
        plan = self.plan(frames, trades)
        self.commit(plan)
        return plan
