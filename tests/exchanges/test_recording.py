"""Recording formats: ticklake's own (round trip) and cryptofeed's (reader)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from ticklake.exchanges.recording import (
    RecordedFrame,
    SessionWriter,
    detect_format,
    exchange_from_name,
    read_cryptofeed,
    read_session,
    read_ticklake,
)

FRAMES = [
    RecordedFrame("kraken", "k-1", 1795658400000000, '{"method":"subscribe"}', "sent", "wss://ws.kraken.com/v2"),
    RecordedFrame("kraken", "k-1", 1795658400000001, '{"channel":"heartbeat"}', "recv", "wss://ws.kraken.com/v2"),
    RecordedFrame("coinbase", "c-1", 1795658400000002, '{"note":"ünïcödé ✓","nl":"a\\nb"}', "recv", ""),
    RecordedFrame("binance", "b-1", 1795658400000003, b"\x00\xff\xfebinary", "recv", "wss://x"),
    RecordedFrame("binance", "b-1", 1795658400000004, "", "recv", "wss://x"),
    RecordedFrame("binance", "b-1", 1795658400000005, "line\nbreak and \"quotes\"", "recv", "wss://x"),
]


def _write(path: Path, frames: list[RecordedFrame]) -> None:
    with SessionWriter(path) as writer:
        for frame in frames:
            writer.write_frame(frame.exchange, frame.conn_id, frame.received_us, frame.payload,
                               direction=frame.direction, url=frame.url)


@pytest.mark.parametrize("name", ["session.tlrec", "session.tlrec.gz"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    _write(path, FRAMES)
    assert detect_format(path) == "ticklake"
    assert list(read_session(path, include_sent=True)) == FRAMES
    assert list(read_session(path)) == [frame for frame in FRAMES if frame.direction == "recv"]


def test_utf8_bytes_payloads_are_stored_as_text(tmp_path: Path) -> None:
    path = tmp_path / "s.tlrec"
    _write(path, [RecordedFrame("kraken", "k", 1, '{"a":"é"}'.encode(), "recv", "")])
    assert [frame.payload for frame in read_ticklake(path)] == ['{"a":"é"}']
    assert '"enc"' not in path.read_text(encoding="utf-8")


def test_line_format_is_documented_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "s.tlrec"
    _write(path, FRAMES[:2])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == ('{"v":1,"exchange":"kraken","conn_id":"k-1","url":"wss://ws.kraken.com/v2","dir":"sent",'
                        '"t_us":1795658400000000,"payload":"{\\"method\\":\\"subscribe\\"}"}')
    assert len(lines) == 2


def test_append_mode_keeps_earlier_frames(tmp_path: Path) -> None:
    path = tmp_path / "s.tlrec"
    _write(path, FRAMES[1:2])
    with SessionWriter(path, append=True) as writer:
        writer.write_frame("coinbase", "c-1", 5, "x")
    assert [frame.payload for frame in read_ticklake(path)] == [FRAMES[1].payload, "x"]


def test_truncated_last_line_is_skipped_but_corruption_elsewhere_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.tlrec"
    _write(path, FRAMES[1:3])
    good = path.read_text(encoding="utf-8")
    path.write_text(good + '{"v":1,"exchange":"kra', encoding="utf-8")  # a crash mid-write
    assert list(read_ticklake(path)) == FRAMES[1:3]
    path.write_text('{"v":1,"exchange":"kra\n' + good, encoding="utf-8")
    with pytest.raises(ValueError, match=":1:"):
        list(read_ticklake(path))


def test_writer_refuses_frames_after_close(tmp_path: Path) -> None:
    writer = SessionWriter(tmp_path / "s.tlrec")
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError):
        writer.write_frame("kraken", "k", 1, "x")


CRYPTOFEED_SAMPLE = """\
wss://ws.kraken.com <-> 1618678132.368463
wss://ws.kraken.com <- 1618678132.83097: {"event":"subscribe","pair":["XMR/USD"],"subscription":{"name":"trade"}}
1618678132.831468: {"connectionID":1,"event":"systemStatus","status":"online","version":"1.8.3"}

1618678142.592855: [993,[["354.11000000","0.89594024","1618678142.557535","s","l",""]],"trade","XMR/USD"]
https://api.kraken.com/0/public/AssetPairs -> 1618678132.358447: {"error":[],"result":{}}
wss://ws.kraken.com <-> 1618678200.5
1618678201.25: {"event":"heartbeat"}


"""


def test_cryptofeed_reader_on_a_sample(tmp_path: Path) -> None:
    path = tmp_path / "KRAKEN.ws.48.0"
    path.write_text(CRYPTOFEED_SAMPLE, encoding="utf-8")
    assert detect_format(path) == "cryptofeed"
    frames = list(read_session(path))
    assert [(f.exchange, f.conn_id, f.received_us, f.direction, f.url) for f in frames] == [
        ("kraken", "KRAKEN.ws.48.0", 1618678132831468, "recv", "wss://ws.kraken.com"),
        ("kraken", "KRAKEN.ws.48.0", 1618678142592855, "recv", "wss://ws.kraken.com"),
        ("kraken", "KRAKEN.ws.48.0#2", 1618678201250000, "recv", "wss://ws.kraken.com"),
    ]
    assert isinstance(frames[1].payload, str) and frames[1].payload.startswith("[993,[[")
    sent = [f for f in read_cryptofeed(path, include_sent=True) if f.direction == "sent"]
    assert [(f.received_us, f.payload[:18]) for f in sent] == [(1618678132830970, '{"event":"subscrib')]


def test_cryptofeed_reader_infers_the_venue_from_the_url_when_the_name_does_not_say(tmp_path: Path) -> None:
    path = tmp_path / "session-17.log"
    path.write_text("wss://ws-feed.exchange.coinbase.com <-> 1.5\n2.5: {}\n", encoding="utf-8")
    assert [(f.exchange, f.received_us) for f in read_session(path)] == [("coinbase", 2_500_000)]


@pytest.mark.parametrize(("name", "url", "venue"), [
    ("BINANCE.ws.1.0", "", "binance"), ("BINANCE_US.ws.1.0", "", "binance"), ("KRAKEN.ws.50.0", "", "kraken"),
    ("COINBASE.ws.28.0", "", "coinbase"), ("x.log", "wss://stream.binance.com:9443/ws", "binance"),
    ("x.log", "wss://ws.kraken.com/v2", "kraken"), ("x.log", "wss://advanced-trade-ws.coinbase.com", "coinbase"),
    ("x.log", "wss://example.com/binance", ""),
])
def test_exchange_from_name(name: str, url: str, venue: str) -> None:
    assert exchange_from_name(name, url) == venue


def test_unknown_formats_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("hello world\n", encoding="utf-8")
    with pytest.raises(ValueError):
        detect_format(path)
    empty = tmp_path / "empty.tlrec"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError):
        detect_format(empty)


def test_gzip_recording_is_real_gzip(tmp_path: Path) -> None:
    path = tmp_path / "s.tlrec.gz"
    _write(path, FRAMES[1:2])
    assert gzip.decompress(path.read_bytes()).startswith(b'{"v":1,')


@pytest.mark.parametrize(("name", "received", "sent"), [
    ("BINANCE.ws.1.0", 265, 0), ("BINANCE_US.ws.1.0", 480, 0), ("KRAKEN.ws.48.0", 49, 1),
    ("KRAKEN.ws.49.0", 60, 1), ("KRAKEN.ws.50.0", 4321, 1), ("COINBASE.ws.28.0", 9946, 3),
])
def test_cryptofeed_reader_on_the_shared_recordings(cryptofeed_dir: Path, name: str, received: int,
                                                    sent: int) -> None:
    path = cryptofeed_dir / name
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    assert sum(1 for line in lines if line[0].isdigit()) == received  # independent count from the raw text
    frames = list(read_session(path))
    assert len(frames) == received
    assert {(f.exchange, f.conn_id, f.direction) for f in frames} == {(exchange_from_name(name), name, "recv")}
    assert [f.received_us for f in frames] == sorted(f.received_us for f in frames)
    everything = list(read_session(path, include_sent=True))
    assert sum(1 for f in everything if f.direction == "sent") == sent
    first_stamp, _, first_payload = next(line for line in lines if line[0].isdigit()).partition(": ")
    assert frames[0].payload == first_payload
    assert frames[0].received_us == int(first_stamp.replace(".", "").ljust(16, "0")[:16])
