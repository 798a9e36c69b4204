"""The local deployment a drill runs its failure modes against, every part a real process on loopback:

    simulated venues ─(TCP proxy per venue, WebSocket and REST)─▶ ``ticklake feed`` ─▶ noida-db broker
      ─▶ ``ticklake up --roles ingest,api,offload`` (the embedded warehouse, its API, the offloader)
      ─(TCP proxy)─▶ SeaweedFS's Iceberg REST catalog; data files straight to its S3 gateway

The embedded warehouse (chdb) belongs to one process, so the ingester, the API and the offloader
share one (docs/architecture.md): killing the API or the offloader kills that process. The drill is
the roles' supervisor: a killed role is started again at once, as systemd or compose's
``restart: unless-stopped`` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

import ticklake
from ticklake.drill import venues as simulated_venues
from ticklake.drill.proxy import Proxy
from ticklake.drill.services import Broker, Seaweed, _die_with_the_parent, free_port
from ticklake.venues import NAMES

log = logging.getLogger(__name__)

NAMESPACE = "ticklake"

# What the drill runs: three venues' protocols, each with trade ids per market backfilled over REST
# (Kraken's REST under a tight rate limit, 1 request/s), two markets on one connection for Binance.
MARKETS: dict[str, list[str]] = {"binance": ["BTC/USDT", "ETH/USDT"], "kraken": ["BTC/USD"], "coinbase": ["ETH/USD"]}
TRADES_PER_SECOND = 20.0  # per market
SEED = 14

# The only settings the drill changes from the defaults: where things are, the Kafka bus with a
# stable ingester id (docs: static membership), and a faster cold-tier schedule, so that an offload
# runs within a mode (the default interval, 300 s, would leave most modes without one).
OFFLOAD_INTERVAL_S = 20
SAFETY_LAG_S = 5


@dataclass
class Role:
    """One ticklake process: its command, log and HTTP address (API or metrics)."""

    name: str
    args: list[str]
    base_url: str
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Deployment:
    """Start with ``async with Deployment(workdir) as deployment``; everything stops at the end,
    also on error."""

    def __init__(self, workdir: Path, markets: dict[str, list[str]] = MARKETS, rate: float = TRADES_PER_SECOND,
                 seed: int = SEED, extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.extra_env = extra_env or {}
        self.markets = markets
        self.rate = rate
        self.seed = seed
        self.broker = Broker(workdir / "broker")
        self.seaweed = Seaweed(workdir / "seaweed")
        self.venues: subprocess.Popen[str] | None = None
        self.control_url = ""
        self.venue_proxies: dict[str, list[Proxy]] = {}  # exchange -> [WebSocket, REST]
        self.catalog_proxy: Proxy | None = None
        self.http = httpx.AsyncClient(timeout=10)
        api_port, metrics_port = free_port(), free_port()
        self.feed = Role("feed", ["feed"], f"http://127.0.0.1:{metrics_port}", workdir / "feed.log")
        self.node = Role("node", ["up", "--roles", "ingest,api,offload"], f"http://127.0.0.1:{api_port}",
                         workdir / "node.log")
        self.env: dict[str, str] = {}
        self._metrics_port = metrics_port
        self._api_port = api_port

    # --- starting and stopping --------------------------------------------------------------------
    async def __aenter__(self) -> Deployment:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker.spawn()
        self.seaweed.spawn()
        self._start_venues()
        await self._until(self.broker.ready, 20, "the broker did not open its port")
        await self._until(self.seaweed.ready, 60, "SeaweedFS was not ready")
        urls = await self._venue_urls()
        self.catalog_proxy = await Proxy("127.0.0.1", self.seaweed.iceberg_port, "iceberg-catalog").start()
        self.env = await self._environment(urls)
        topics = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "ticklake.cli", "topics"],
                                         cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=120)
        if topics.returncode != 0:
            raise RuntimeError(f"`ticklake topics` failed: {topics.stderr[-2000:]}")
        self.start_role(self.node)
        self.start_role(self.feed)
        await self.until_answering(self.node, 180)
        await self.until_answering(self.feed, 60)

    def _start_venues(self) -> None:
        self.venues = subprocess.Popen(
            simulated_venues.command(self.seed, self.rate, self.markets), cwd=self.workdir, env=self._python_env(),
            stdout=subprocess.PIPE, stderr=(self.workdir / "venues.log").open("ab"), text=True, start_new_session=True,
            preexec_fn=_die_with_the_parent if sys.platform == "linux" else None)

    async def _venue_urls(self) -> dict[str, dict[str, str]]:
        assert self.venues is not None and self.venues.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.venues.stdout.readline), 60)
        if not line:
            venues_log = (self.workdir / "venues.log").read_text(errors="replace")
            raise RuntimeError(f"the simulated venues did not start: {venues_log[-2000:]}")
        urls: dict[str, Any] = json.loads(line)
        self.control_url = urls["control_url"]
        proxied: dict[str, dict[str, str]] = {"ws_urls": {}, "rest_urls": {}}
        for exchange in self.markets:
            ws, rest = urls["ws_urls"][exchange], urls["rest_urls"][exchange]
            proxies = [await Proxy("127.0.0.1", _port_of(ws), f"{exchange}-ws").start(),
                       await Proxy("127.0.0.1", _port_of(rest), f"{exchange}-rest").start()]
            self.venue_proxies[exchange] = proxies
            proxied["ws_urls"][exchange] = proxies[0].url(ws)
            proxied["rest_urls"][exchange] = proxies[1].url(rest)
        return proxied

    def _python_env(self) -> dict[str, str]:
        """The drill's interpreter environment without any ticklake configuration of the user's: the
        deployment is the drill's own."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKLAKE_", "AWS_"))}
        env["TZ"] = "UTC"
        # The processes run the very ticklake the drill runs, wherever they start.
        source = str(Path(ticklake.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([source, *filter(None, [env.get("PYTHONPATH")])])
        return env

    async def _environment(self, urls: dict[str, dict[str, str]]) -> dict[str, str]:
        assert self.catalog_proxy is not None
        lake = self.seaweed.lake_settings(NAMESPACE, catalog_uri=f"http://127.0.0.1:{self.catalog_proxy.port}")
        env = self._python_env()
        env.update({
            "TICKLAKE_DATA_DIR": str(self.workdir / "data"),
            "TICKLAKE_BUS__KIND": "kafka",
            "TICKLAKE_BUS__KAFKA__BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "TICKLAKE_BUS__KAFKA__INSTANCE_ID": "ingest-1",
            "TICKLAKE_API__PORT": str(self._api_port),
            "TICKLAKE_METRICS__PORT": str(self._metrics_port),
            "TICKLAKE_LAKE__CATALOG": "rest",
            "TICKLAKE_LAKE__URI": lake.uri,
            "TICKLAKE_LAKE__WAREHOUSE": lake.warehouse,
            "TICKLAKE_LAKE__NAMESPACE": lake.namespace,
            "TICKLAKE_LAKE__S3_ENDPOINT": lake.s3_endpoint,
            "TICKLAKE_LAKE__S3_ACCESS_KEY_ID": lake.s3_access_key_id,
            "TICKLAKE_LAKE__S3_SECRET_ACCESS_KEY": lake.s3_secret_access_key.get_secret_value(),
            "TICKLAKE_LAKE__OFFLOAD_INTERVAL_S": str(OFFLOAD_INTERVAL_S),
            "TICKLAKE_LAKE__SAFETY_LAG_S": str(SAFETY_LAG_S),
            "TICKLAKE_LOG_LEVEL": "INFO",
            **self.extra_env,
        })
        for exchange, symbols in self.markets.items():
            upper = exchange.upper()
            env[f"TICKLAKE_VENUES__{upper}__SYMBOLS"] = json.dumps(symbols)
            env[f"TICKLAKE_VENUES__{upper}__WS_URL"] = urls["ws_urls"][exchange]
            env[f"TICKLAKE_VENUES__{upper}__REST_URL"] = urls["rest_urls"][exchange]
        for other in NAMES:  # a registered venue the drill does not simulate would reach the real one
            if other not in self.markets:
                env[f"TICKLAKE_VENUES__{other.upper()}__ENABLED"] = "false"
        return env

    async def close(self) -> None:
        for role in (self.feed, self.node):
            await self.stop_role(role)
        if self.venues is not None and self.venues.poll() is None:
            self.venues.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.venues.wait, 15)
            except subprocess.TimeoutExpired:
                self.venues.kill()
        for proxy in [p for proxies in self.venue_proxies.values() for p in proxies] + (
                [self.catalog_proxy] if self.catalog_proxy else []):
            await proxy.close()
        await asyncio.to_thread(self.broker.stop, signal.SIGKILL)
        await asyncio.to_thread(self.seaweed.stop, signal.SIGKILL)
        for name in Seaweed.COMPONENTS:  # weed leaves its gRPC sockets behind, named after the port
            Path(f"/tmp/seaweedfs-{name}-grpc-{self.seaweed.grpc_ports[name]}.sock").unlink(missing_ok=True)
        await self.http.aclose()

    @staticmethod
    async def _until(ready: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not await asyncio.to_thread(ready):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} within {timeout_s:.0f} s")
            await asyncio.sleep(0.05)

    # --- roles ------------------------------------------------------------------------------------
    def start_role(self, role: Role) -> None:
        with role.log.open("ab") as out:
            role.process = subprocess.Popen(
                [sys.executable, "-m", "ticklake.cli", *role.args], cwd=self.workdir, env=self.env, stdout=out,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_the_parent if sys.platform == "linux" else None)
        role.starts += 1

    def kill_role(self, role: Role) -> None:
        """SIGKILL, now (no cleanup of any kind in the process)."""
        if role.process is not None and role.process.poll() is None:
            role.process.send_signal(signal.SIGKILL)
            role.process.wait(10)

    async def stop_role(self, role: Role, timeout_s: float = 60) -> int | None:
        """SIGTERM (the role writes what is in flight), SIGKILL after ``timeout_s``; its exit status."""
        process = role.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 10)
        return process.returncode

    async def until_answering(self, role: Role, timeout_s: float) -> None:
        path = "/health" if role is self.node else "/metrics"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if role.process is not None and role.process.poll() is not None:
                raise RuntimeError(f"{role.name} exited ({role.process.returncode}): "
                                   f"{role.log.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await self.http.get(f"{role.base_url}{path}")).status_code in (200, 503):
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{role.name} did not answer on {role.base_url}{path} within {timeout_s:.0f} s")

    # --- what ticklake shows ------------------------------------------------------------------------
    async def metrics(self, role: Role) -> dict[str, float] | None:
        """The role's /metrics as ``{'name{labels}': value}``; None when it does not answer (what a
        failed Prometheus scrape, ``up == 0``, is)."""
        try:
            response = await self.http.get(f"{role.base_url}/metrics", timeout=2)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        samples: dict[str, float] = {}
        for line in response.text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    samples[name] = float(value)
        return samples

    async def health(self) -> dict[str, Any] | None:
        try:
            response = await self.http.get(f"{self.node.base_url}/health", timeout=3)
            body: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return body

    # --- the venues' tapes ----------------------------------------------------------------------------
    async def tape(self, exchange: str, symbol: str, start_us: int = 0, end_us: int = 2**63 - 1) -> list[list[Any]]:
        """The venue's trades of the market with exchange time in [start_us, end_us):
        ``[trade_id, price, qty, side, ts_us]``."""
        response = await self.http.get(f"{self.control_url}/tape", params={
            "exchange": exchange, "symbol": symbol, "start_us": start_us, "end_us": end_us}, timeout=60)
        response.raise_for_status()
        rows: list[list[Any]] = response.json()
        return rows

    async def pause_venues(self) -> None:
        (await self.http.post(f"{self.control_url}/pause")).raise_for_status()


def _port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port
