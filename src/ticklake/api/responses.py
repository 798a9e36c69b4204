"""Responses encoded by us, with orjson, and the one error shape every endpoint uses.

Returning dicts through a framework's JSON encoder measured ~50x slower than handing it bytes
(shared notes, stack.md): handlers build plain dicts and lists of strings, and JSONBytes encodes them.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response


class JSONBytes(Response):
    """A JSON response from bytes already encoded, or from a value orjson encodes."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        # Health details from other components may hold paths, enums or int keys: never fail on them.
        return orjson.dumps(content, default=str, option=orjson.OPT_NON_STR_KEYS)


class ApiError(Exception):
    """A request answered with ``{"error": {...}}`` and ``status``: a client's mistake, an unknown market,
    or (503, with ``Retry-After`` in ``headers``) a request the API cannot serve right now."""

    def __init__(self, status: int, message: str, parameter: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.parameter = parameter
        self.headers = headers


ECHO_LIMIT = 64  # characters of a client's input an error message repeats


def shown(value: object) -> str:
    """``value`` as an error message quotes it: repr, cut to ECHO_LIMIT characters. A client's 60 kB
    symbol is not sent back whole (it would multiply what a hostile client costs, and fill logs)."""
    text = repr(value)
    if len(text) <= ECHO_LIMIT:
        return text
    return f"{text[:ECHO_LIMIT]}… ({len(str(value))} characters)"


def error_body(message: str, parameter: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message} if parameter is None else {"parameter": parameter,
                                                                             "message": message}
    return {"error": error}


def error_response(status: int, message: str, parameter: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONBytes:
    return JSONBytes(error_body(message, parameter), status_code=status, headers=headers)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.parameter, exc.headers)
