"""Loading the SQL that lives in ``migrations/``, ``queries/`` and ``fragments/``.

Statements in a file are separated by a semicolon at the end of a line. Values are never formatted
into the text: every file uses ClickHouse query parameters (``{name:Type}``) bound by the client.

A query may name a fragment, ``{{name}}``, for text that several queries share (the gold candle's
aggregate list): it is replaced by ``fragments/<name>.sql`` when the query is loaded, so a fact that
more than one query states is written once. Migrations never take fragments: an applied migration is
history, checked by its checksum, and must not change when a fragment does.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")
# Double braces, so that a fragment can never be mistaken for a query parameter ({name:Type}).
_FRAGMENT = re.compile(r"\{\{(\w+)\}\}")


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def split_statements(text: str) -> list[str]:
    return [s.strip() for s in _STATEMENT_END.split(_strip_comments(text)) if s.strip()]


def read_sql(folder: str, name: str) -> str:
    return (resources.files("ticklake.warehouse") / folder / name).read_text(encoding="utf-8")


@cache
def fragment(name: str) -> str:
    """The text of ``fragments/<name>.sql`` without its comments: part of a statement, never one."""
    try:
        text = _strip_comments(read_sql("fragments", f"{name}.sql")).strip()
    except FileNotFoundError:
        raise ValueError(f"no SQL fragment {name!r}: expected fragments/{name}.sql") from None
    if _STATEMENT_END.search(text) or _FRAGMENT.search(text):
        raise ValueError(f"fragments/{name}.sql must be part of one statement: no ';' ending a line, "
                         "no fragment of its own")
    return text


def _fragment_in_place(match: re.Match[str]) -> str:
    # Every line of the fragment at the indentation of the line that names it, so that the query reads
    # as written where ClickHouse shows it (errors, the query log).
    line_start = match.string.rfind("\n", 0, match.start()) + 1
    indent = match.string[line_start:match.start()]
    return fragment(match.group(1)).replace("\n", "\n" + indent if indent.isspace() else "\n")


def query_statements(text: str) -> list[str]:
    """The statements of a query file's ``text``, each ``{{name}}`` replaced by its fragment."""
    # Comments go first: a fragment named in a comment is not part of the query.
    return split_statements(_FRAGMENT.sub(_fragment_in_place, _strip_comments(text)))


@cache
def query(name: str) -> str:
    """The one statement in ``queries/<name>.sql``."""
    statements = query_statements(read_sql("queries", f"{name}.sql"))
    if len(statements) != 1:
        raise ValueError(f"queries/{name}.sql holds {len(statements)} statements; expected one")
    return statements[0]


@cache
def script(name: str) -> tuple[str, ...]:
    """All statements in ``queries/<name>.sql``, in order."""
    return tuple(query_statements(read_sql("queries", f"{name}.sql")))
