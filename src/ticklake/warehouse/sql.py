"""Loading the SQL that lives in ``migrations/`` and ``queries/``.

Statements in a file are separated by a semicolon at the end of a line. Values are never formatted
into the text: every file uses ClickHouse query parameters (``{name:Type}``) bound by the client.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def split_statements(text: str) -> list[str]:
    return [s.strip() for s in _STATEMENT_END.split(_strip_comments(text)) if s.strip()]


def read_sql(folder: str, name: str) -> str:
    return (resources.files("ticklake.warehouse") / folder / name).read_text(encoding="utf-8")


@cache
def query(name: str) -> str:
    """The one statement in ``queries/<name>.sql``."""
    statements = split_statements(read_sql("queries", f"{name}.sql"))
    if len(statements) != 1:
        raise ValueError(f"queries/{name}.sql holds {len(statements)} statements; expected one")
    return statements[0]


@cache
def script(name: str) -> tuple[str, ...]:
    """All statements in ``queries/<name>.sql``, in order."""
    return tuple(split_statements(read_sql("queries", f"{name}.sql")))
