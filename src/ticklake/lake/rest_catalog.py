"""pyiceberg's REST catalog with timeouts (catalog.py opens it; apart, so that importing catalog.py
does not import pyiceberg)."""

from __future__ import annotations

from typing import Any

from pyiceberg.catalog.rest import RestCatalog
from requests import PreparedRequest, Response, Session
from requests.adapters import HTTPAdapter

from ticklake.lake.catalog import CONNECT_TIMEOUT_S, HTTP_TIMEOUT_PROPERTY
from ticklake.settings import LakeSettings


class _TimeoutAdapter(HTTPAdapter):
    """Every request through it gets (connect, read) timeouts unless the caller set its own."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()  # max_retries=0: a commit is never re-sent (its outcome decides, see offload.py)
        self.timeout = timeout

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


class _BoundedRestCatalog(RestCatalog):
    """pyiceberg's REST catalog with a timeout on every HTTP call, the first ones included (the
    config fetch and the OAuth2 token, made while the catalog is constructed).

    A timed-out commit may still have been applied by the catalog: harmless here, as the watermark
    moves in the same commit (the next run reads it) and commits are never retried."""

    def _config_headers(self, session: Session) -> None:
        # Called first thing for every session pyiceberg creates, before any request is made.
        super()._config_headers(session)
        timeout = float(self.properties.get(HTTP_TIMEOUT_PROPERTY, LakeSettings().io_timeout_s))
        adapter = _TimeoutAdapter((min(CONNECT_TIMEOUT_S, timeout), timeout))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
