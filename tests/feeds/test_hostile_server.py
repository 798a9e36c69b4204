"""Nothing a server sends crashes a feed: fragments, binary, broken UTF-8, junk, odd closes."""

from __future__ import annotations

import asyncio
import json

from picows import WSCloseCode, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from ticklake.exchanges.feeds import feed_for


def _trade(trade_id: int) -> bytes:
    data = {"e": "trade", "E": 1795600000001, "s": "BTCUSDT", "t": trade_id, "p": "65000.10000000",
            "q": "0.00100000", "T": 1795600000000, "m": False, "M": True}
    return json.dumps({"stream": "btcusdt@trade", "data": data}, separators=(",", ":")).encode()


class _Hostile(WSListener):
    def on_ws_connected(self, transport: WSTransport) -> None:
        whole = _trade(1)
        transport.send(WSMsgType.TEXT, whole[:10], fin=False)  # one message in three fragments
        transport.send(WSMsgType.CONTINUATION, whole[10:30], fin=False)
        transport.send(WSMsgType.CONTINUATION, whole[30:], fin=True)
        transport.send(WSMsgType.BINARY, _trade(2))  # binary frame, valid JSON
        transport.send(WSMsgType.TEXT, b'{"stream":"btcusdt@trade","data":\xff\xfe}')  # not UTF-8
        transport.send(WSMsgType.TEXT, b"")  # empty
        transport.send(WSMsgType.TEXT, b"[1,2,3]")  # JSON, but not an object
        transport.send(WSMsgType.CONTINUATION, b"stray", fin=True)  # continues nothing: ignored
        transport.send(WSMsgType.TEXT, _trade(3))
        transport.send_close(WSCloseCode.TRY_AGAIN_LATER, b"maintenance")
        transport.disconnect()


async def test_hostile_frames_are_kept_and_the_feed_survives(feed_settings, bus, taps, running) -> None:
    def route(request: WSUpgradeRequest) -> WSListener:
        return _Hostile()

    server = await ws_create_server(route, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        tap = taps("binance")
        feed = feed_for("binance", ["BTC/USDT"], bus, feed_settings, f"ws://127.0.0.1:{port}")
        task = await running(feed)
        await tap.wait_for(lambda: len({r.conn_id for r in tap.raws()}) >= 2, what="a reconnect")
        first = tap.raws()[0].conn_id
        raws = [r for r in tap.raws() if r.conn_id == first]
        assert [r.frame_seq for r in raws] == [1, 2, 3, 4, 5, 6]
        assert raws[0].payload == _trade(1).decode() and raws[0].error == "" and raws[0].trade_count == 1
        assert raws[1].error == "" and raws[1].trade_count == 1
        assert "UTF-8" in raws[2].error and "\ufffd" in raws[2].payload
        assert raws[3].error and raws[3].payload == ""
        assert raws[4].error and raws[4].payload == "[1,2,3]"
        assert raws[5].error == "" and raws[5].trade_count == 1
        assert [t.trade_id for t in tap.trades() if t.conn_id == first] == [1, 2, 3]
        assert not task.done()
        status = feed.status()
        assert status.reconnects >= 1
        assert status.last_error == "closed by venue: 1013 maintenance", status.last_error
    finally:
        server.close()
        await asyncio.sleep(0)
