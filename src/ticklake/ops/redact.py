"""Credentials masked wherever settings are printed or logged.

A URL's password (``http://user:pw@host``) and secret-looking query values, any setting or librdkafka
property whose name says it is a secret (``sasl.password``, ``ssl.key.password``, ``*secret*``,
``*token*``, ``*credential*``), and every ``SecretStr`` become ``***``. Names and hosts stay: they are
what a reader needs to find a mistake.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
_SECRET_NAME = re.compile(r"pass(word|wd)?|secret|token|credential|private|api[_.-]?key", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def mask_url(url: str) -> str:
    """``url`` without its password or secret query values; anything that is not a URL unchanged."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        netloc, query = parts.netloc, parts.query
        if parts.password is not None:
            netloc = f"{parts.username or ''}:{MASK}@{netloc.rpartition('@')[2]}"
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(key) for key, _ in pairs):
            query = urlencode([(key, MASK if is_secret_name(key) else value) for key, value in pairs], safe="*")
        if (netloc, query) == (parts.netloc, parts.query):
            return url
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # not parseable as a URL: show no part of it
        return MASK


def masked(value: Any, name: str = "") -> Any:
    """A JSON-like ``value`` (a settings dump) with every credential masked."""
    if isinstance(value, dict):
        return {key: masked(item, str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item, name) for item in value]
    if isinstance(value, str):
        if value and is_secret_name(name):
            return MASK
        return mask_url(value)
    return value
