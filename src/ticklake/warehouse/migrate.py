"""Versioned schema migrations: ``migrations/NNNN_name.up.sql`` and its ``.down.sql``.

Applied in version order at every start; each applied version is recorded with the checksum of its
up file, so an edited migration is refused rather than silently diverging between machines.
Rollback runs the down files newest first. ClickHouse DDL is not transactional, so every statement
in an up file is idempotent (``IF NOT EXISTS``): a migration interrupted half way (a crash, a lost
server) is completed by running it again, and nothing is dropped automatically.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver.client import Client

from ticklake.warehouse.sql import query, read_sql, script, split_statements

log = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.up\.sql$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: str
    down: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.up.encode()).hexdigest()


def available() -> list[Migration]:
    folder = resources.files("ticklake.warehouse") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            version, name = int(match.group(1)), match.group(2)
            down_name = entry.name.replace(".up.sql", ".down.sql")
            found.append(Migration(version, name, entry.read_text("utf-8"), read_sql("migrations", down_name)))
    found.sort(key=lambda m: m.version)
    return found


def applied(client: Client) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) of the versions currently applied."""
    client.command(query("schema_migrations"))
    rows = client.query(query("applied_migrations")).result_rows
    return {int(version): (name, checksum) for version, name, checksum in rows}


def _record(client: Client, migration: Migration, direction: str) -> None:
    client.command(
        query("record_migration"),
        parameters={"version": migration.version, "name": migration.name, "checksum": migration.checksum,
                    "direction": direction},
    )


def _run(client: Client, text: str) -> None:
    for statement in split_statements(text):
        client.command(statement)


def upgrade(client: Client, target: int | None = None) -> list[int]:
    """Apply every pending migration up to ``target`` (default: the newest). Returns the versions applied."""
    done = applied(client)
    newly: list[int] = []
    for migration in available():
        if target is not None and migration.version > target:
            break
        if migration.version in done:
            if done[migration.version][1] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} was changed after it was applied; "
                    "add a new migration instead of editing an applied one"
                )
            continue
        log.info("applying migration %04d_%s", migration.version, migration.name)
        try:
            _run(client, migration.up)
        except Exception as exc:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} failed: {exc}. Its statements are idempotent: "
                "fix the cause and start again, or roll back with `ticklake migrate --to "
                f"{migration.version - 1}`"
            ) from exc
        _record(client, migration, "up")
        newly.append(migration.version)
    return newly


def downgrade(client: Client, target: int) -> list[int]:
    """Roll back every applied migration newer than ``target`` (0 = all). Returns the versions rolled back."""
    done = applied(client)
    rolled: list[int] = []
    for migration in reversed(available()):
        if migration.version <= target or migration.version not in done:
            continue
        log.info("rolling back migration %04d_%s", migration.version, migration.name)
        _run(client, migration.down)
        _record(client, migration, "down")
        rolled.append(migration.version)
    return rolled


def apply_retention(client: Client, retention: dict[str, int]) -> None:
    """Set every layer's TTL from settings (cheap: metadata only, parts are not rewritten)."""
    for statement in script("retention"):
        client.command(statement, parameters=retention)
