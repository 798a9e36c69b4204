"""GET /health: the warehouse, pinged here, and whatever components the process registers.

A component is a zero-argument callable returning a mapping with ``status`` ("ok", "degraded" or
"down") and any details. Callables run on the event loop so they may read asyncio-owned state (feed
connections, queues) without locks: they must be quick and must not block. A callable that raises,
or answers without a valid status, shows as down; /health itself never fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.routing import Route

from ticklake.api.params import reject_unknown
from ticklake.api.responses import JSONBytes
from ticklake.warehouse.reader import WarehouseReader

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Mapping[str, Any]]
HealthSources = Mapping[str, HealthCheck]
"""Component name -> check, e.g. ``{"feeds": feeds.health, "ingest": ingest.health}``."""

STATUSES = ("ok", "degraded", "down")  # best to worst: the overall status is the worst component's
WAREHOUSE = "warehouse"


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class HealthEndpoint:
    def __init__(self, reader: WarehouseReader, sources: HealthSources, ping_timeout_s: float = 2.0) -> None:
        if WAREHOUSE in sources:
            raise ValueError(f"the {WAREHOUSE!r} health component is built in; name yours differently")
        self.reader = reader
        self.sources = dict(sources)
        self.ping_timeout_s = ping_timeout_s

    def routes(self) -> list[Route]:
        return [Route("/health", self.health, methods=["GET"])]

    async def health(self, request: Request) -> JSONBytes:
        reject_unknown(request.query_params, ())
        components: dict[str, Mapping[str, Any]] = {WAREHOUSE: await self.warehouse()}
        for name, check in self.sources.items():
            components[name] = self.component(name, check)
        status = max((c["status"] for c in components.values()), key=STATUSES.index)
        body = {"status": status, "components": components}
        return JSONBytes(body, status_code=503 if status == "down" else 200)

    async def warehouse(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            # Abandon, rather than wait for, a ping stuck behind a long query: /health must answer.
            with anyio.fail_after(self.ping_timeout_s):
                answered = await anyio.to_thread.run_sync(self.reader.ping, abandon_on_cancel=True)
        except TimeoutError:
            return {"status": "down", "error": f"no answer to a ping within {self.ping_timeout_s:g} s"}
        except Exception as exc:
            log.warning("warehouse health check failed", exc_info=True)
            return {"status": "down", "error": _error_text(exc)}
        if not answered:
            return {"status": "down", "error": "ping returned an unexpected answer"}
        return {"status": "ok", "ping_ms": round((time.perf_counter() - started) * 1000, 3)}

    @staticmethod
    def component(name: str, check: HealthCheck) -> Mapping[str, Any]:
        try:
            result = check()
        except Exception as exc:
            log.warning("health check %r failed", name, exc_info=True)
            return {"status": "down", "error": _error_text(exc)}
        if not isinstance(result, Mapping) or result.get("status") not in STATUSES:
            status = result.get("status") if isinstance(result, Mapping) else result
            return {"status": "down", "error": f"health check returned status {status!r}; "
                                               f"expected one of {', '.join(STATUSES)}"}
        return result
