"""Who may call the API: API keys (keys.py) and a token bucket per key, as pure ASGI middleware.

Pure ASGI, so the same check covers HTTP requests and WebSocket handshakes (``/v1/stream``), before
any route runs. Every path needs a key except those a load balancer, a Prometheus scrape or a person
opening the page needs before they have one (``OPEN_PATHS``, ``/static/``); a CORS preflight
(``OPTIONS``) never needs one, since browsers send it without credentials. Listing the open paths,
not the protected ones, keeps a route added later protected unless it is opened on purpose.

A key is read from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, and on ``/v1/stream`` also
from the ``api_key`` query parameter: browsers can set no header on a WebSocket or an EventSource.

Limits are per key and per process: each API process of a fleet allows a key its whole rate.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from ticklake.api.keys import KeyStore, StoredKey, Verdict, is_loopback, keys_path
from ticklake.api.responses import error_response
from ticklake.ops.metrics import API_AUTH_REFUSED
from ticklake.settings import ConfigError, Settings

log = logging.getLogger(__name__)

KEY_PARAMETER = "api_key"  # the query parameter /v1/stream takes a key in
STREAM_PATH = "/v1/stream"
OPEN_PATHS = frozenset({"/", "/health", "/metrics", "/docs", "/openapi.json"})
OPEN_PREFIXES = ("/static/",)


class AuthSetupError(ConfigError):
    """The API would be reachable beyond this machine with nobody allowed in, or anybody."""


def key_store_for(settings: Settings) -> KeyStore | None:
    """The keys the API asks for, or None when it is open (``api.auth``; see settings.py).

    Raises AuthSetupError when keys are required and none is active: a start that would refuse every
    request, or (before this check existed) serve everyone, is stopped with what to do instead.
    """
    api = settings.api
    loopback = is_loopback(api.host)
    if api.auth == "none":
        if not loopback:
            log.warning("the API on %s answers anyone who can reach it: api.auth = \"none\" (set api.auth = "
                        "\"auto\" and create a key with `ticklake keys create` to require API keys)", api.host)
        return None
    if api.auth == "auto" and loopback:
        return None
    path = keys_path(api.keys_file, settings.data_dir)
    store = KeyStore(path)
    if not store.has_active():
        why = (f"api.host is {api.host}, beyond loopback" if api.auth == "auto" else "api.auth is \"keys\"")
        raise AuthSetupError(
            f"the API requires API keys ({why}) and {path} holds no active key: create one with `ticklake keys "
            "create`, or set api.auth = \"none\" (TICKLAKE_API__AUTH=none) to serve without keys")
    return store


class TokenBucket:
    """``rate`` requests a second on average, up to ``burst`` at once."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> float:
        """0 when a request may go now (one token taken), else the seconds until one may."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(frozen=True, slots=True)
class _Refusal:
    status: int
    reason: str  # the metric's label
    message: str
    headers: dict[str, str]


def needs_key(scope: Scope) -> bool:
    if scope["type"] == "http" and scope.get("method") == "OPTIONS":
        return False  # a CORS preflight carries no credentials
    path: str = scope.get("path", "")
    trimmed = path.rstrip("/") or "/"  # "/health/" is redirected to /health, never served itself
    return not (trimmed in OPEN_PATHS or path.startswith(OPEN_PREFIXES))


def presented_key(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
        elif name == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    if scope.get("path") == STREAM_PATH:
        query: bytes = scope.get("query_string", b"")
        for key, given in parse_qsl(query.decode("latin-1")):
            if key == KEY_PARAMETER and given:
                return given
    return None


class KeyAuth:
    """Refuse requests without a valid key (401) or beyond their key's rate (429 with Retry-After)."""

    def __init__(self, app: ASGIApp, store: KeyStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.store = store
        self.clock = clock
        self.buckets: dict[str, TokenBucket] = {}
        # Every refusal's count at zero from the start (the reasons _judge gives): a dashboard line, not "no data".
        for reason in ("missing", "invalid", "revoked", "rate_limited"):
            API_AUTH_REFUSED.labels(reason)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not needs_key(scope):
            await self.app(scope, receive, send)
            return
        refusal = self._judge(presented_key(scope), scope["type"] == "websocket" or scope["path"] == STREAM_PATH)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        API_AUTH_REFUSED.labels(refusal.reason).inc()
        response = error_response(refusal.status, refusal.message, headers=refusal.headers)
        if scope["type"] == "http":
            await response(scope, receive, send)
            return
        # A WebSocket handshake: answered with the same HTTP error where the server can send one
        # (uvicorn can), else closed before it is accepted (the client sees 403; a browser only a close).
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": response.status_code,
                        "headers": response.raw_headers})
            await send({"type": "websocket.http.response.body", "body": response.body})
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": refusal.message[:120]})

    def _judge(self, key: str | None, stream: bool) -> _Refusal | None:
        if key is None:
            where = "'Authorization: Bearer <key>' or 'X-API-Key: <key>'" + (
                f" (or the {KEY_PARAMETER} query parameter)" if stream else "")
            return _Refusal(401, "missing", f"this API needs an API key: send it as {where}",
                            {"WWW-Authenticate": 'Bearer realm="ticklake"'})
        check = self.store.check(key)
        if check.verdict is Verdict.INVALID:
            return _Refusal(401, "invalid", "the API key is not valid",
                            {"WWW-Authenticate": 'Bearer realm="ticklake", error="invalid_token"'})
        assert check.key is not None
        if check.verdict is Verdict.REVOKED:
            return _Refusal(401, "revoked", f"the API key {check.key.id} was revoked; ask for a new one",
                            {"WWW-Authenticate": 'Bearer realm="ticklake", error="invalid_token"'})
        wait = self._bucket(check.key).take(self.clock())
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            return _Refusal(429, "rate_limited",
                            f"the API key {check.key.id} is over its rate limit ({check.key.rate_per_s:g} requests/s, "
                            f"bursts of {check.key.burst}); retry after {seconds} s", {"Retry-After": str(seconds)})
        return None

    def _bucket(self, key: StoredKey) -> TokenBucket:
        bucket = self.buckets.get(key.id)
        if bucket is None:
            bucket = self.buckets[key.id] = TokenBucket(key.rate_per_s, key.burst, self.clock())
        else:  # a limit changed in the file applies from now
            bucket.rate, bucket.burst = key.rate_per_s, key.burst
        return bucket
