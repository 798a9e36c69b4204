"""Kraken spot WebSocket v2 (``wss://ws.kraken.com/v2``), public ``trade`` channel.

From docs.kraken.com (spot-websocket-v2: status, trade, heartbeat, ping):

* on connect: ``{"channel":"status","type":"update","data":[{system, api_version, connection_id,
  version}]}``;
* ``{"method":"subscribe","params":{"channel":"trade","symbol":[...],"snapshot":bool},"req_id":N}``
  is acknowledged per symbol with ``{"method":"subscribe","result":{channel, snapshot, symbol},
  "success":true,"time_in":..,"time_out":..}``; with ``snapshot`` the last 50 trades follow as
  ``{"channel":"trade","type":"snapshot","data":[...]}``. ``snapshot`` defaults to false here, as on
  the current trade page (the notes record pages disagreeing; clients should send it explicitly);
* updates ``{"channel":"trade","type":"update","data":[{symbol, side, price, qty, ord_type,
  trade_id, timestamp}]}``, with ``price``/``qty`` as JSON *numbers*, ``side`` the taker's side,
  ``trade_id`` sequential per book and ``timestamp`` RFC 3339 with microseconds;
* ``{"channel":"heartbeat"}`` about once a second when nothing else was sent, once subscribed;
* ``{"method":"ping","req_id":N}`` answered with ``{"method":"pong","req_id":N,"time_in","time_out"}``.
"""

from __future__ import annotations

import random
import time
from typing import Any

import orjson
from picows import WSTransport

from ticklake.simulator.tape import TapeTrade
from ticklake.simulator.venue import SimConnection, VenueServer, now_us, rfc3339_us

HEARTBEAT = '{"channel":"heartbeat"}'


def _trade_item(native: str, trade: TapeTrade, ord_type: str) -> str:
    # Written by hand: price and qty must be the exact number tokens of the tape, not floats.
    return (
        f'{{"symbol":"{native}","side":"{trade.side}","price":{trade.price},"qty":{trade.qty},'
        f'"ord_type":"{ord_type}","trade_id":{trade.trade_id},"timestamp":"{rfc3339_us(trade.ts_us)}"}}'
    )


class KrakenConnection(SimConnection):
    pass


class KrakenServer(VenueServer[KrakenConnection]):
    exchange = "kraken"
    base_path = "/v2"

    def accepts(self, path: str, query: str) -> bool:
        return path in ("/v2", "/v2/")

    def new_connection(self, conn_id: int, transport: WSTransport, path: str) -> KrakenConnection:
        return KrakenConnection(conn_id, transport, path)

    def on_open(self, conn: KrakenConnection) -> None:
        status = {"channel": "status", "type": "update", "data": [{
            "version": "2.0.10", "system": "online", "api_version": "v2",
            "connection_id": random.getrandbits(63),
        }]}
        self.send(conn, orjson.dumps(status).decode())

    def _item(self, symbol: str, trade: TapeTrade) -> str:
        native = self.tapes[symbol].generator.instrument.native
        # ord_type is the taker's order type; derived from the id so the frames are reproducible.
        return _trade_item(native, trade, "market" if trade.trade_id % 5 == 0 else "limit")

    def publish(self, symbol: str, burst: list[TapeTrade]) -> None:
        receivers = [c for c in self.connections.values() if symbol in c.symbols]
        if not receivers:
            return
        frame = '{"channel":"trade","type":"update","data":[' + ",".join(
            self._item(symbol, t) for t in burst) + "]}"
        for conn in receivers:
            self.send(conn, frame)

    def on_timer(self, conn: KrakenConnection, now: float) -> None:
        interval = self.options.heartbeat_interval_s
        if interval is not None and conn.symbols and now - conn.last_sent >= interval:
            self.send(conn, HEARTBEAT)

    def on_text(self, conn: KrakenConnection, text: str) -> None:
        time_in = rfc3339_us(now_us())
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            self._reply(conn, {"error": "Malformed request", "method": "", "success": False}, time_in, None)
            return
        method = request["method"]
        req_id = request.get("req_id")
        if method == "ping":
            self._reply(conn, {"method": "pong"}, time_in, req_id)
        elif method in ("subscribe", "unsubscribe"):
            self._subscription(conn, method, request.get("params"), time_in, req_id)
        else:
            self._reply(conn, {"error": f"Method not found: {method}", "method": method, "success": False},
                        time_in, req_id)

    def _subscription(self, conn: KrakenConnection, method: str, params: Any, time_in: str,
                      req_id: Any) -> None:
        if not isinstance(params, dict) or params.get("channel") != "trade":
            channel = params.get("channel") if isinstance(params, dict) else None
            self._reply(conn, {"error": f"Channel not supported: {channel}", "method": method,
                               "success": False}, time_in, req_id)
            return
        symbols = params.get("symbol")
        if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
            self._reply(conn, {"error": "Missing or invalid symbol", "method": method, "success": False},
                        time_in, req_id)
            return
        snapshot = params.get("snapshot", False) is True
        for native in symbols:
            symbol = self.by_native.get(native)
            if symbol is None:
                self._reply(conn, {"error": f"Currency pair not supported {native}", "method": method,
                                   "success": False, "symbol": native}, time_in, req_id)
                continue
            if method == "unsubscribe":
                conn.symbols.discard(symbol)
                self._reply(conn, {"method": method, "result": {"channel": "trade", "symbol": native},
                                   "success": True}, time_in, req_id)
                continue
            # Registering and taking the snapshot in one step of the event loop: no trade can fall
            # between the snapshot and the first update, and none can be in both.
            conn.symbols.add(symbol)
            self._reply(conn, {"method": method, "result": {"channel": "trade", "snapshot": snapshot,
                                                           "symbol": native},
                               "success": True}, time_in, req_id)
            if snapshot:
                trades = self.tapes[symbol].last(self.options.snapshot_size)
                self.send(conn, '{"channel":"trade","type":"snapshot","data":[' + ",".join(
                    self._item(symbol, t) for t in trades) + "]}")

    def _reply(self, conn: KrakenConnection, message: dict[str, Any], time_in: str, req_id: Any) -> None:
        message["time_in"] = time_in
        message["time_out"] = rfc3339_us(time.time_ns() // 1000)
        if req_id is not None:
            message["req_id"] = req_id
        self.send(conn, orjson.dumps(message).decode())
