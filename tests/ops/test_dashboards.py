"""Every panel of the Grafana dashboards shows data: proven against a real Prometheus.

A real Prometheus (Debian's package, tests/support/prometheus.py) scrapes running ticklake processes
every second: ``ticklake up --simulate`` (embedded mode), then the roles as processes around a real
Kafka-protocol broker and the simulated venues in a process of their own (distributed mode). Every
target expression of every panel of ``deploy/grafana/dashboards/*.json`` is then sent to Prometheus's
HTTP API (``/api/v1/query``) as Grafana would send it: Prometheus must accept it, and it must return
at least one series holding a number (Grafana draws nothing for no series, NaN or ±Inf).

Grafana's variables are replaced as Grafana would for this Prometheus (``grafana_variables``): the
data source's scrape interval is the test's (1 s), ``$__interval`` its minimum (that scrape interval),
``$__rate_interval`` Grafana's max($__interval + scrape interval, 4 times the scrape interval), ``$__range``
the dashboard's default time range; a template variable with "All" selected becomes its ``allValue``
(``.*`` if it has none), as Grafana does.

A panel whose metric exists in one mode only (the Kafka bus's in distributed mode; the cold tier's in
embedded mode, see ``ONLY_DISTRIBUTED`` and ``ONLY_EMBEDDED`` for why) is checked there only, and
``test_every_panel_is_proven_in_some_mode`` makes sure no panel is in neither. Panels fed only by
services that run in production alone (Redpanda's, ClickHouse's own metrics) would be listed in
``PRODUCTION_ONLY`` with the reason, and checked to parse: none is, today.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.broker import Broker
from tests.support.cgroup import memory_cgroup
from tests.support.processes import REPO, env_for, free_port, running, ticklake, wait_for
from tests.support.prometheus import Prometheus, finite
from tests.support.prometheus import running as prometheus_running
from tests.support.roles import start, start_simulator, stop_all, venue_env
from ticklake.venues import NAMES, venue

DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"

SCRAPE_INTERVAL_S = 1
INTERVAL_S = SCRAPE_INTERVAL_S  # $__interval: never below the data source's scrape interval
RATE_INTERVAL_S = max(INTERVAL_S + SCRAPE_INTERVAL_S, 4 * SCRAPE_INTERVAL_S)  # Grafana's $__rate_interval
SHOWS_DATA_TIMEOUT_S = 120.0  # a bound for a loaded machine; every target usually shows data within ~30 s

# Metrics (or name prefixes) that exist in one mode only: their panels are checked in the other mode.
ONLY_DISTRIBUTED: dict[str, str] = {
    "ticklake_bus_produced_total": "the Kafka producer's (ticklake feed): the embedded bus has no broker",
    "ticklake_bus_delivery_failures_total": "the Kafka producer's (ticklake feed)",
    "ticklake_bus_consumed_total": "the Kafka consumer's (ticklake ingest)",
    "ticklake_bus_consumer_lag": "the Kafka consumer's (ticklake ingest)",
    "ticklake_bus_rejected_total": "messages read from Kafka that are not ticklake records",
    "ticklake_api_auth_refused_total": "counted where the API asks for keys (api.auth; beyond loopback), as the "
                                       "distributed test's API does; `ticklake up` on loopback asks for none",
    "ticklake_process_memory_limit_bytes": "exported by a process under a cgroup memory limit (a container's): the "
                                           "distributed test runs the feed role in one",
}
FEED_MEMORY_LIMIT = 2 * 1024**3
ONLY_EMBEDDED: dict[str, str] = {
    "ticklake_lake_": "the offload role reads the warehouse, and the embedded engine (chdb) lets one process open "
                      "it: as a role of its own it needs a ClickHouse server, which does not install here",
    "ticklake_api_candle_cache_total": "the candle cache is kept by a process that is the warehouse's one writer "
                                       "(embedded bus); with a Kafka bus, other ingesters may write",
}
# Metrics scraped from services that run in production only (deploy/compose.yaml): their panels are
# checked to parse, not to show data. None so far.
PRODUCTION_ONLY: dict[str, str] = {}

# Two markets per venue, every venue: each venue's feed, parser and backfill show on the dashboard.
MARKETS = {name: list(venue(name).default_symbols[:2]) for name in NAMES}


# --- the dashboards, as Grafana reads them -------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One query of one panel: ``expr`` as written, ``query`` as Grafana sends it to Prometheus."""

    dashboard: str
    panel: str
    ref: str
    expr: str
    query: str

    def __str__(self) -> str:
        return f"{self.dashboard}: {self.panel!r} {self.ref}: {self.query}"

    def names(self, prefixes: Iterable[str]) -> list[str]:
        """The prefixes (metric names or name prefixes) this target's expression names."""
        metrics = re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", self.expr)
        return [prefix for prefix in prefixes if any(metric.startswith(prefix) for metric in metrics)]


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
_RANGE = re.compile(r"^now-(\d+)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def grafana_variables(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """What Grafana puts in place of each variable (see the module docstring)."""
    found = _RANGE.match(dashboard.get("time", {}).get("from", "now-6h"))
    assert found, f"{dashboard.get('title')}: a default time range relative to now is expected"
    range_s = int(found.group(1)) * _UNIT_S[found.group(2)]
    values = {"__interval": f"{INTERVAL_S}s", "__interval_ms": str(INTERVAL_S * 1000),
              "__rate_interval": f"{RATE_INTERVAL_S}s", "__range": f"{range_s}s", "__range_s": str(range_s),
              "__range_ms": str(range_s * 1000)}
    for variable in dashboard.get("templating", {}).get("list", []):
        current = variable.get("current", {}).get("value")
        chosen = current if isinstance(current, list) else [current]
        if variable.get("includeAll") and "$__all" in chosen:
            values[variable["name"]] = variable.get("allValue") or ".*"
        else:  # the values selected, as the regex Grafana makes of several
            values[variable["name"]] = chosen[0] if len(chosen) == 1 else f"({'|'.join(map(str, chosen))})"
    return values


def substitute(expr: str, values: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        assert name in values, f"Grafana variable {match.group(0)} is not defined in the dashboard: {expr}"
        return values[name]

    return _VARIABLE.sub(value, expr)


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside a collapsed row."""
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def dashboard_targets() -> list[Target]:
    targets = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        values = grafana_variables(dashboard)
        for panel in panels(dashboard["panels"]):
            for target in panel.get("targets", []):
                if target.get("hide"):
                    continue
                targets.append(Target(path.name, panel["title"], target["refId"], target["expr"],
                                      substitute(target["expr"], values)))
    return targets


def checked_in(target: Target, mode: str) -> bool:
    """Whether ``target`` must show data in ``mode`` ("embedded" or "distributed")."""
    elsewhere = {"embedded": ONLY_DISTRIBUTED, "distributed": ONLY_EMBEDDED}[mode]
    return not target.names(elsewhere) and not target.names(PRODUCTION_ONLY)


# --- the check -----------------------------------------------------------------------------------
def assert_every_panel_shows_data(prometheus: Prometheus, mode: str) -> list[Target]:
    """Every target parses (Prometheus answers success), and each one checked in ``mode`` returns a
    series holding a number, once enough has been scraped; returns the targets checked."""
    targets = dashboard_targets()
    checked = [target for target in targets if checked_in(target, mode)]
    for target in targets:  # (those checked are queried below): a QueryError if one does not parse
        if target not in checked:
            prometheus.query(target.query)
    waiting: dict[Target, list[dict[str, Any]]] = {target: [] for target in checked}
    deadline = time.monotonic() + SHOWS_DATA_TIMEOUT_S
    while waiting and time.monotonic() < deadline:
        for target in list(waiting):
            result = prometheus.query(target.query)
            if any(finite(series) for series in result):
                del waiting[target]
            else:
                waiting[target] = result
        time.sleep(0.5)
    assert not waiting, f"{mode} mode: panels without data after {SHOWS_DATA_TIMEOUT_S:.0f} s:\n" + "\n".join(
        f"{target}\n    -> {result}" for target, result in waiting.items())
    return checked


def test_every_panel_is_proven_in_some_mode() -> None:
    """No target is left out of both modes, every exception names a metric some panel uses, and
    every expression is complete once Grafana's variables are replaced."""
    targets = dashboard_targets()
    assert targets, f"no panel targets in {DASHBOARDS}"
    for target in targets:
        assert "$" not in target.query and "[[" not in target.query, f"a variable left in {target}"
        assert checked_in(target, "embedded") or checked_in(target, "distributed") or \
            target.names(PRODUCTION_ONLY), f"checked in neither mode: {target}"
    for exceptions in (ONLY_DISTRIBUTED, ONLY_EMBEDDED, PRODUCTION_ONLY):
        for name in exceptions:
            assert any(target.names([name]) for target in targets), f"{name}: no panel uses it any more"
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in panels(json.loads(path.read_text())["panels"]):
            assert panel["type"] in ("row", "text") or panel.get("targets"), \
                f"{path.name}: {panel['title']!r} has no query"


def test_grafana_variables_are_replaced_as_grafana_does() -> None:
    dashboard = {"time": {"from": "now-6h"}, "templating": {"list": [
        {"name": "exchange", "includeAll": True, "allValue": ".*", "current": {"value": ["$__all"]}},
        {"name": "symbol", "includeAll": True, "current": {"value": ["BTC/USDT", "ETH/USDT"]}}]}}
    values = grafana_variables(dashboard)
    assert substitute('rate(x{exchange=~"$exchange",symbol=~"${symbol}"}[$__rate_interval]) / $__range_s',
                      values) == f'rate(x{{exchange=~".*",symbol=~"(BTC/USDT|ETH/USDT)"}}[{RATE_INTERVAL_S}s]) / 21600'
    assert RATE_INTERVAL_S >= 4 * SCRAPE_INTERVAL_S
    with pytest.raises(AssertionError, match="not defined"):
        substitute("x[$unknown]", values)


# --- embedded mode: ticklake up --simulate -------------------------------------------------------
@pytest.mark.slow
def test_every_panel_shows_data_from_ticklake_up(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", TICKLAKE_SIMULATOR__TRADES_PER_SECOND="10",
                  # The cold tier's offload, maintenance and audit within seconds instead of minutes and a day.
                  TICKLAKE_LAKE__OFFLOAD_INTERVAL_S="3", TICKLAKE_LAKE__SAFETY_LAG_S="2",
                  TICKLAKE_LAKE__MAINTENANCE_INTERVAL_HOURS="0.003",
                  TICKLAKE_COMPLETENESS__INTERVAL_S="2", TICKLAKE_COMPLETENESS__SETTLE_S="2",
                  **{f"TICKLAKE_VENUES__{name.upper()}__SYMBOLS": json.dumps(symbols)
                     for name, symbols in MARKETS.items()})
    with running("up", "--simulate", env=env) as (process, base):
        wait_for(f"{base}/health", lambda r: r.status_code in (200, 503), timeout=90)
        api = base.removeprefix("http://")
        with prometheus_running(tmp_path / "prometheus", {"ticklake": [api]}, SCRAPE_INTERVAL_S) as prometheus:
            prometheus.wait_until_up()
            checked = assert_every_panel_shows_data(prometheus, "embedded")
        assert process.poll() is None, "ticklake up exited during the test"
    assert any(target.names(["ticklake_lake_"]) for target in checked)


# --- distributed mode: the roles around a broker -------------------------------------------------
@contextmanager
def distributed_roles(tmp_path: Path) -> Iterator[dict[str, list[str]]]:
    """``ticklake feed`` and ``ticklake ingest --api`` (asking for API keys, as a deployment serving
    other machines does) around a real broker, the venues in a process of their own; yields the
    scrape targets per job, named as deploy/prometheus/prometheus.yml names them."""
    with memory_cgroup(FEED_MEMORY_LIMIT) as join_cgroup:
        yield from _roles(tmp_path, join_cgroup)


def _roles(tmp_path: Path, join_cgroup: Callable[[], None]) -> Iterator[dict[str, list[str]]]:
    broker = Broker(tmp_path / "broker").start()
    simulator, urls = start_simulator(7, 10.0, MARKETS)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        api_port, feed_metrics_port = free_port(), free_port()
        env = env_for(tmp_path / "data", TICKLAKE_BUS__KIND="kafka",
                      TICKLAKE_BUS__KAFKA__BOOTSTRAP_SERVERS=broker.bootstrap, TICKLAKE_BUS__KAFKA__PARTITIONS="2",
                      TICKLAKE_BUS__KAFKA__SESSION_TIMEOUT_MS="6000", TICKLAKE_BUS__KAFKA__INSTANCE_ID="ingest-1",
                      TICKLAKE_COMPLETENESS__INTERVAL_S="2", TICKLAKE_COMPLETENESS__SETTLE_S="2",
                      TICKLAKE_API__PORT=str(api_port), TICKLAKE_API__AUTH="keys")
        env.update(venue_env(MARKETS, urls))
        for command in (["topics"], ["keys", "create", "--name", "dashboard-test"]):
            done = ticklake(*command, env=env, timeout=60)
            assert done.returncode == 0, done.stdout + done.stderr
        # The feed role under a memory limit, as in a container (deploy/compose.yaml): the memory panel's
        # limit is read from its cgroup.
        processes.append(start(["feed"], {**env, "TICKLAKE_METRICS__PORT": str(feed_metrics_port)},
                               tmp_path / "feed.log", preexec_fn=join_cgroup))
        processes.append(start(["ingest", "--api"], env, tmp_path / "ingest.log"))
        wait_for(f"http://127.0.0.1:{api_port}/health", lambda r: r.status_code in (200, 503), timeout=90)
        yield {"ticklake-feed": [f"127.0.0.1:{feed_metrics_port}"], "ticklake-ingest": [f"127.0.0.1:{api_port}"]}
        for process, log in zip(processes, ("feed.log", "ingest.log"), strict=True):
            assert process.poll() is None, f"{log}: {(tmp_path / log).read_text(errors='replace')[-3000:]}"
    finally:
        stop_all(processes, simulator, broker)


@pytest.mark.slow
def test_every_panel_shows_data_from_the_distributed_roles(tmp_path: Path) -> None:
    with distributed_roles(tmp_path) as jobs, \
            prometheus_running(tmp_path / "prometheus", jobs, SCRAPE_INTERVAL_S) as prometheus:
        prometheus.wait_until_up()
        checked = assert_every_panel_shows_data(prometheus, "distributed")
        # Per ingester: the feed role, which never writes, is not shown as one that stopped writing.
        since_write = next(t for t in checked if t.panel == "Since the last write, per ingester")
        assert {s["metric"]["job"] for s in prometheus.query(since_write.query)} == {"ticklake-ingest"}
    assert any(target.names(["ticklake_bus_consumer_lag"]) for target in checked)
