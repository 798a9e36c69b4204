"""Exactly once into bronze, silver and gold; invalid trades dead-lettered with their rule and frame."""

from __future__ import annotations

from decimal import Decimal

from clickhouse_connect.driver.client import Client

from tests.factories import BASE_US, frame, trade
from ticklake.exchanges.gaps import Gap, Resume
from ticklake.model import RawFrame, ResumePoint
from ticklake.settings import ValidationSettings
from ticklake.warehouse.reader import WarehouseReader
from ticklake.warehouse.writer import WarehouseWriter

LENIENT = ValidationSettings(max_age_days=3650)


def counts(client: Client) -> dict[str, int]:
    return WarehouseReader(client).layer_counts()


def one_minute_trades(client: Client) -> int:
    return sum(c.trades for c in WarehouseReader(client).ohlcv("binance", "BTC/USDT", "1m", None, None, 100))


def test_repeated_frame_is_counted_once(warehouse: Client) -> None:
    writer = WarehouseWriter(warehouse, LENIENT)
    first = [trade(i) for i in range(1, 11)]
    writer.write([frame("f1", frame_seq=1, trade_count=10)], first)
    plan = writer.write([frame("f1 again", frame_seq=2, trade_count=10)], first)
    assert plan.duplicates == 10 and not plan.bronze
    assert counts(warehouse)["bronze_trades"] == 10
    assert counts(warehouse)["silver_trades"] == 10
    assert one_minute_trades(warehouse) == 10


def test_duplicates_inside_one_batch(warehouse: Client) -> None:
    plan = WarehouseWriter(warehouse, LENIENT).write([], [trade(1), trade(2), trade(1), trade(2), trade(3)])
    assert plan.duplicates == 2
    assert one_minute_trades(warehouse) == 3


def test_retried_batch_is_stored_once(warehouse: Client) -> None:
    """The same plan committed twice (an insert whose acknowledgement was lost) lands once everywhere."""
    writer = WarehouseWriter(warehouse, LENIENT)
    plan = writer.plan([frame("f", trade_count=3)], [trade(1), trade(2), trade(3, "-1")])
    writer.commit(plan)
    writer.commit(plan)
    assert counts(warehouse) == {"raw_frames": 1, "bronze_trades": 3, "silver_trades": 2, "dead_letters": 1,
                                 "gold_rows": 6}
    assert one_minute_trades(warehouse) == 2


def test_reconnect_snapshot_overlap_and_late_trades(warehouse: Client) -> None:
    """A snapshot repeats trades already stored; an out-of-order trade below the newest id is new."""
    writer = WarehouseWriter(warehouse, LENIENT)
    writer.write([], [trade(i) for i in (1, 2, 3, 5, 6)])
    snapshot = [trade(i) for i in (2, 3, 4, 5, 6, 7)]  # 4 arrives late, 7 is new
    plan = writer.write([], snapshot)
    assert sorted(t.trade_id for t in plan.bronze) == [4, 7]
    assert plan.duplicates == 4
    assert one_minute_trades(warehouse) == 7


def test_duplicates_are_found_after_a_restart(warehouse: Client) -> None:
    WarehouseWriter(warehouse, LENIENT).write([], [trade(i) for i in range(1, 6)])
    fresh = WarehouseWriter(warehouse, LENIENT)  # a new process knows nothing but what bronze holds
    plan = fresh.write([], [trade(i) for i in range(3, 9)])
    assert sorted(t.trade_id for t in plan.bronze) == [6, 7, 8]
    assert one_minute_trades(warehouse) == 8


def test_same_id_on_another_market_is_not_a_duplicate(warehouse: Client) -> None:
    plan = WarehouseWriter(warehouse, LENIENT).write([], [
        trade(1), trade(1, symbol="ETH/USDT"), trade(1, exchange="kraken", symbol="BTC/USD", native_symbol="BTC/USD"),
    ])
    assert plan.duplicates == 0 and len(plan.silver) == 3


def test_invalid_trades_go_to_dead_letters_with_rule_and_frame(warehouse: Client) -> None:
    now = BASE_US
    raw = '{"stream":"x@trade","data":{}}'
    bad = [
        trade(1, "0"), trade(2, "-5"), trade(3, "1e40"), trade(4, qty="0"), trade(5, "abc"),
        trade(6, symbol="", native_symbol="FOOBAR"),
        trade(7, ts_us=now + 3_600_000_000, received_us=now),
        trade(8, ts_us=now - 40 * 86_400_000_000, received_us=now),
        trade(9, "1.0000000000000000001"),
        trade(2**64, "1", ts_us=now, received_us=now),  # the factory's time from this id would be absurd too
    ]
    good = trade(10, "101.25")
    writer = WarehouseWriter(warehouse, ValidationSettings())
    plan = writer.write([frame(raw, trade_count=11)], [*bad, good])
    assert [t.trade_id for t in plan.silver] == [10]
    rows = warehouse.query("SELECT trade_id, rule, detail, raw_frame FROM dead_letters ORDER BY rule").result_rows
    rules = {row[1]: row for row in rows}
    assert set(rules) == {"non_positive_price", "absurd_price", "non_positive_qty", "bad_price", "unknown_symbol",
                          "future_timestamp", "stale_timestamp", "bad_trade_id"}
    assert len(rows) == len(bad)
    assert all(row[3] == raw for row in rows), "every dead letter carries its raw frame"
    assert "FOOBAR" in rules["unknown_symbol"][2]
    assert rules["bad_trade_id"][0] == 0 and str(2**64) in rules["bad_trade_id"][2]
    # bronze keeps every storable trade in the venue's terms, valid or not
    assert counts(warehouse)["bronze_trades"] == 10


def test_dead_letter_raw_frame_found_in_raw_layer_when_not_in_batch(warehouse: Client) -> None:
    writer = WarehouseWriter(warehouse, ValidationSettings())
    writer.write([frame("the frame", conn_id="c9", frame_seq=4)], [])
    writer.write([], [trade(1, "-1", conn_id="c9", frame_seq=4)])
    assert warehouse.query("SELECT raw_frame FROM dead_letters").result_rows == [("the frame",)]


def test_trade_with_absurd_timestamp_is_dead_lettered_not_a_failed_batch(warehouse: Client) -> None:
    writer = WarehouseWriter(warehouse, ValidationSettings())
    plan = writer.write([], [trade(1, ts_us=10**19), trade(2, ts_us=-5), trade(3)])
    assert [t.trade_id for t in plan.silver] == [3]
    rules = warehouse.query("SELECT trade_id, rule FROM dead_letters ORDER BY trade_id").result_rows
    assert rules == [(1, "bad_timestamp"), (2, "bad_timestamp")]


def test_resume_points_are_the_newest_stored_trade_per_venue_market(warehouse: Client) -> None:
    WarehouseWriter(warehouse, LENIENT).write([], [
        *(trade(i, ts_us=BASE_US + i) for i in (3, 4, 5, 6, 7, 8)),
        trade(9, "-1", ts_us=BASE_US + 9),  # 9: a dead letter still counts
        trade(4, symbol="ETH/USDT", ts_us=BASE_US + 4),
    ])
    assert WarehouseReader(warehouse).resume_points() == {
        ("binance", "BTCUSDT"): Resume(ResumePoint(9, BASE_US + 9), []),
        ("binance", "ETHUSDT"): Resume(ResumePoint(4, BASE_US + 4), [])}


def test_resume_points_name_the_holes_a_crash_left_unfilled(warehouse: Client) -> None:
    """Trades 13-15 were never stored (a backfill cut short by a crash) but 16-18 were: the feed must
    backfill 13-15 too, or they would be skipped for good."""
    WarehouseWriter(warehouse, LENIENT).write([], [trade(i) for i in (10, 11, 12, 16, 17, 18)])
    assert WarehouseReader(warehouse).resume_points() == {("binance", "BTCUSDT"): Resume(
        ResumePoint(18, trade(18).ts_us), [Gap("BTCUSDT", 13, 15, trade(12).ts_us, trade(16).ts_us)])}


def test_repair_re_derives_a_rest_page_with_the_rest_parser(warehouse: Client) -> None:
    """A backfilled REST page reached raw, then the process died: repair parses it as REST, for its market."""
    from datetime import timedelta

    from ticklake.warehouse.repair import repair

    body = ('[{"id":41,"price":"100.5","qty":"0.25","quoteQty":"25.125","time":1767225600000,'
            '"isBuyerMaker":true,"isBestMatch":true},'
            '{"id":42,"price":"100.6","qty":"0.5","quoteQty":"50.3","time":1767225600001,'
            '"isBuyerMaker":false,"isBestMatch":true}]')
    page = RawFrame("binance", "binance-rest-1", 1, BASE_US + 10_000, body, "", 2, "rest", "BTCUSDT")
    writer = WarehouseWriter(warehouse, LENIENT)
    writer.write([page], [])  # raw only: as if killed before the bronze insert
    report = repair(writer, timedelta(hours=1))
    assert report["frames"] == 1
    rows = warehouse.query("SELECT trade_id, toString(side), conn_id FROM silver_trades ORDER BY trade_id").result_rows
    assert rows == [(41, "sell", "binance-rest-1"), (42, "buy", "binance-rest-1")]


def test_a_backfilled_trade_completes_one_that_bronze_holds_and_silver_lacks(warehouse: Client) -> None:
    """A batch cut short after bronze whose messages the broker then lost is replayed by nobody: the
    completeness check finds the hole in silver and has the trades fetched again, and the writer then
    completes silver (once: gold counts them once) instead of dropping them as duplicates."""
    writer = WarehouseWriter(warehouse, LENIENT)
    writer.write([], [trade(i) for i in (1, 2, 3)])
    cut_short = writer.plan([], [trade(i) for i in (4, 5)])
    writer._insert_table(cut_short, "bronze_trades")  # the crash: bronze only
    writer.forget_state()

    writer.write([], [trade(5, conn_id="binance-ws-1")])  # a socket repeat stays a duplicate
    writer.write([], [trade(i, conn_id="binance-rest-1f") for i in (3, 4, 5)])  # the backfill completes
    silver = warehouse.query("SELECT trade_id, count() FROM silver_trades GROUP BY trade_id ORDER BY trade_id")
    assert silver.result_rows == [(i, 1) for i in (1, 2, 3, 4, 5)]
    bronze = warehouse.query("SELECT count() FROM bronze_trades").result_rows[0][0]
    assert bronze == 5
    [(volume, count)] = warehouse.query(
        "SELECT sumMerge(volume), countMerge(trades) FROM gold_ohlcv WHERE timeframe = 86400").result_rows
    assert (Decimal(volume), count) == (Decimal("0.25") * 5, 5)


def test_trades_of_unsubscribed_or_malformed_markets_are_dead_letters_not_markets(warehouse: Client) -> None:
    """Issue 13: Kraken FOO/BAR (not subscribed) was stored as a new market with candles, and
    "BTC/USD\\u0000" as one the API cannot query; both now go to dead letters with their reason."""
    from ticklake.venues.kraken import mapper as kraken

    row = ('{"symbol":"%s","side":"buy","price":1.5,"qty":2,"ord_type":"market","trade_id":%d,'
           '"timestamp":"2026-11-26T02:00:00Z"}')
    payload = ('{"channel":"trade","type":"update","data":[' + ",".join(
        row % (symbol, i + 1) for i, symbol in enumerate(["BTC/USD", "FOO/BAR", "BTC/USD\\u0000"])) + "]}")
    received = 1_795_658_400_000_000
    parsed = kraken.parse_frame(payload, received, "c1", 1, subscribed=frozenset({"BTC/USD"}))
    raw = RawFrame("kraken", "c1", 1, received, payload, trade_count=len(parsed.trades))
    plan = WarehouseWriter(warehouse, ValidationSettings()).write([raw], list(parsed.trades))
    assert [(t.symbol, t.trade_id) for t in plan.silver] == [("BTC/USD", 1)]
    rows = warehouse.query("SELECT trade_id, rule, raw_frame FROM dead_letters ORDER BY trade_id").result_rows
    assert [(r[0], r[1]) for r in rows] == [(2, "unsubscribed_market"), (3, "bad_symbol")]
    assert all(r[2] == payload for r in rows)
    reader = WarehouseReader(warehouse)
    assert reader.ohlcv("kraken", "FOO/BAR", "1m", None, None, 10) == []
    assert sum(c.trades for c in reader.ohlcv("kraken", "BTC/USD", "1m", None, None, 10)) == 1


def test_repair_keeps_a_re_parsed_frames_unsubscribed_market_out_as_the_live_feed_does(warehouse: Client) -> None:
    """A frame stored raw only (killed before bronze) and re-parsed at start must reach the same verdict as
    live: the trade of a market the feed did not subscribe to is a dead letter, not a new market."""
    from datetime import timedelta

    from ticklake.warehouse.repair import repair

    row = ('{"symbol":"%s","side":"buy","price":1.5,"qty":2,"ord_type":"market","trade_id":%d,'
           '"timestamp":"2026-11-26T02:00:00Z"}')
    payload = ('{"channel":"trade","type":"update","data":[' + ",".join(
        row % (symbol, i + 1) for i, symbol in enumerate(["BTC/USD", "FOO/BAR"])) + "]}")
    writer = WarehouseWriter(warehouse, ValidationSettings())
    writer.write([RawFrame("kraken", "c1", 1, 1_795_658_400_000_000, payload, trade_count=2)], [])  # raw only
    report = repair(writer, timedelta(hours=1), {"kraken": frozenset({"BTC/USD"})})
    assert report["frames"] == 1
    stored = warehouse.query("SELECT symbol, trade_id FROM silver_trades ORDER BY trade_id").result_rows
    assert stored == [("BTC/USD", 1)]
    assert warehouse.query("SELECT trade_id, rule FROM dead_letters").result_rows == [(2, "unsubscribed_market")]
