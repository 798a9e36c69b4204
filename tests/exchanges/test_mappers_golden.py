"""Golden tests: the project's own fixture frames (current venue formats) against hand-checked output.

Each ``fixtures/<venue>.frames.jsonl`` line is one frame exactly as the venue sends it; the matching
``<venue>.expected.json`` entry gives the expected ``ParsedFrame``, every trade field spelled out.
Frame n (1-based) is parsed with ``frame_seq=n`` and ``received_us=received_us_base + n``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ticklake.exchanges.mappers import parser_for
from ticklake.model import ParsedFrame
from ticklake.venues import NAMES
from ticklake.venues.binance import mapper as binance
from ticklake.venues.bitstamp import mapper as bitstamp
from ticklake.venues.coinbase import mapper as coinbase
from ticklake.venues.kraken import mapper as kraken
from ticklake.venues.okx import mapper as okx

FIXTURES = Path(__file__).resolve().parent / "fixtures"
VENUES = NAMES  # every registered venue; each has fixtures/<venue>.*


def _spec(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _frames(venue: str) -> list[bytes]:
    return (FIXTURES / f"{venue}.frames.jsonl").read_bytes().splitlines()


def _check(got: ParsedFrame, want: dict[str, Any], where: str) -> None:
    assert got.kind == want["kind"], (where, got)
    assert got.sequence == want.get("sequence"), (where, got)
    assert [msgspec.structs.asdict(trade) for trade in got.trades] == want.get("trades", []), where
    if "error_contains" in want:
        assert want["error_contains"] in got.error, (where, got.error)
    else:
        assert got.error == "", (where, got.error)


@pytest.mark.parametrize("venue", VENUES)
def test_fixture_frames_match_golden_output(venue: str) -> None:
    spec = _spec(f"{venue}.expected.json")
    frames = _frames(venue)
    assert len(frames) == len(spec["frames"])
    parse = parser_for(venue)
    for seq, (frame, want) in enumerate(zip(frames, spec["frames"], strict=True), 1):
        got = parse(frame, spec["received_us_base"] + seq, spec["conn_id"], seq)
        _check(got, want, f"{venue} line {seq}: {want['note']}")


@pytest.mark.parametrize("venue", VENUES)
def test_str_and_bytes_payloads_parse_alike(venue: str) -> None:
    parse = parser_for(venue)
    for seq, frame in enumerate(_frames(venue), 1):
        assert parse(frame.decode("utf-8"), 5, "c", seq) == parse(frame, 5, "c", seq)


@pytest.mark.parametrize("venue", VENUES)
def test_every_fixture_venue_kind_is_covered(venue: str) -> None:
    kinds = {frame["kind"] for frame in _spec(f"{venue}.expected.json")["frames"]}
    assert {"trades", "subscribed", "error", "other"} <= kinds


def test_binance_rest_trades_golden() -> None:
    spec = _spec("binance.rest.expected.json")
    body = (FIXTURES / "binance.rest.json").read_bytes()
    trades = binance.parse_rest_trades(body, spec["native_symbol"], spec["received_us"],
                                       conn_id=spec["conn_id"], frame_seq=spec["frame_seq"])
    assert [msgspec.structs.asdict(trade) for trade in trades] == spec["trades"]
    # The request's symbol may come lowercase (as streams spell it); trades carry the frames' spelling.
    lower = binance.parse_rest_trades(body, spec["native_symbol"].lower(), spec["received_us"],
                                      conn_id=spec["conn_id"], frame_seq=spec["frame_seq"])
    assert lower == trades


def test_kraken_rest_trades_golden() -> None:
    spec = _spec("kraken.rest.expected.json")
    page = kraken.parse_rest_trades((FIXTURES / "kraken.rest.json").read_bytes(), spec["native_symbol"],
                                    spec["received_us"], conn_id=spec["conn_id"], frame_seq=spec["frame_seq"])
    assert [msgspec.structs.asdict(trade) for trade in page.trades] == spec["trades"]
    assert page.last == spec["last"]


def test_coinbase_rest_trades_golden() -> None:
    spec = _spec("coinbase.rest.expected.json")
    trades = coinbase.parse_rest_trades((FIXTURES / "coinbase.rest.json").read_text(encoding="utf-8"),
                                        spec["native_symbol"], spec["received_us"], conn_id=spec["conn_id"],
                                        frame_seq=spec["frame_seq"])
    assert [msgspec.structs.asdict(trade) for trade in trades] == spec["trades"]


def test_okx_rest_trades_golden() -> None:
    spec = _spec("okx.rest.expected.json")
    trades = okx.parse_rest_trades((FIXTURES / "okx.rest.json").read_bytes(), spec["native_symbol"],
                                   spec["received_us"], conn_id=spec["conn_id"], frame_seq=spec["frame_seq"])
    assert [msgspec.structs.asdict(trade) for trade in trades] == spec["trades"]  # newest first, as served


def test_bitstamp_rest_trades_golden() -> None:
    spec = _spec("bitstamp.rest.expected.json")
    trades = bitstamp.parse_rest_trades((FIXTURES / "bitstamp.rest.json").read_bytes(), spec["native_symbol"],
                                        spec["received_us"], conn_id=spec["conn_id"], frame_seq=spec["frame_seq"])
    assert [msgspec.structs.asdict(trade) for trade in trades] == spec["trades"]  # newest first, as served
    assert all(trade.ts_us % 1_000_000 == 0 for trade in trades)  # REST times are whole seconds


def test_coinbase_market_trades_side_is_read_as_the_makers() -> None:
    """The decision in docs/decisions/coinbase-side.md, pinned: flipping it must fail a test."""
    assert coinbase.MARKET_TRADES_SIDE_IS_MAKER is True
    frame = (b'{"channel":"market_trades","client_id":"","timestamp":"2026-11-26T02:00:00Z","sequence_num":9,'
             b'"events":[{"type":"update","trades":[{"trade_id":"1","product_id":"BTC-USD","price":"1",'
             b'"size":"1","side":"SELL","time":"2026-11-26T02:00:00Z"}]}]}')
    assert [trade.side for trade in coinbase.parse_frame(frame, 1).trades] == ["buy"]


def test_trades_keep_frame_order_and_identity_fields() -> None:
    frame = _frames("coinbase")[3]  # three trades, ids ascending
    parsed = coinbase.parse_frame(frame, 42, "conn-x", 17)
    assert [trade.trade_id for trade in parsed.trades] == [995098700, 995098701, 995098702]
    assert {(trade.received_us, trade.conn_id, trade.frame_seq) for trade in parsed.trades} == {(42, "conn-x", 17)}


def test_bybit_rest_trades_golden() -> None:
    from ticklake.venues.bybit import mapper as bybit

    spec = _spec("bybit.rest.expected.json")
    body = (FIXTURES / "bybit.rest.json").read_bytes()
    trades = bybit.parse_rest_trades(body, spec["native_symbol"], spec["received_us"],
                                     conn_id=spec["conn_id"], frame_seq=spec["frame_seq"])
    # Page order (Bybit: newest first); execId is the stream's ``i``, side the taker's, time ms text.
    assert [msgspec.structs.asdict(trade) for trade in trades] == spec["trades"]
