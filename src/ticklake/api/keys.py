"""API keys: created by ``ticklake keys``, kept hashed in one JSON file, read by every API process.

A key is ``tlk_<id>_<secret>``: ``id`` is public (8 hex digits, for listing and revoking), ``secret``
is ``secrets.token_urlsafe(32)`` (256 random bits). The file keeps the SHA-256 of the whole key, never
the key: a slow password hash (bcrypt, scrypt) protects low-entropy secrets against guessing, which a
256-bit random secret does not need, and it would cost milliseconds on every request.

The file is replaced atomically (a temporary file renamed over it, mode 0600), so a reader never sees
half of it; writers (``ticklake keys``) take an exclusive lock beside it so that two at once lose
nothing. A running API re-reads it when its modification time, size or inode changed, checked at most
once per ``check_interval_s``: a new or revoked key counts within about a second, without a restart,
in every process sharing the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from ticklake.settings import ConfigError

log = logging.getLogger(__name__)

KEY_PREFIX = "tlk"
FILE_VERSION = 1
DEFAULT_FILE_NAME = "api_keys.json"


@dataclass(frozen=True, slots=True)
class StoredKey:
    id: str
    name: str
    sha256: str  # hex digest of the whole key text
    created_at: str  # RFC 3339, UTC
    revoked_at: str | None
    rate_per_s: float
    burst: int

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class Verdict(Enum):
    VALID = "valid"
    INVALID = "invalid"  # malformed, unknown id, or a wrong secret
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Check:
    verdict: Verdict
    key: StoredKey | None = None  # the matching key, when VALID or REVOKED


class UnknownKeyError(KeyError):
    pass


class KeyFileError(ConfigError):
    """The key file exists but cannot be read as one (a hand edit, a permission): never overwritten."""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def key_id(key: str) -> str | None:
    """The public id of a key as given, or None when it is not shaped like one of ours."""
    parts = key.split("_", 2)  # the secret may itself hold "_"
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class KeyStore:
    """The keys in ``path`` (which need not exist yet: no keys)."""

    def __init__(self, path: Path, check_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.check_interval_s = check_interval_s
        self._clock = clock
        self._checked_at = -float("inf")
        self._lock = threading.Lock()
        # (inode, mtime_ns, size) of what _keys came from; taken first, so a change meanwhile is re-read.
        self._seen: tuple[int, int, int] | None = self._stat()
        self._keys: dict[str, StoredKey] = self._read()  # a broken file fails here, at start, saying why

    # -- reading (the API) ----------------------------------------------------------------------------
    def check(self, presented: str) -> Check:
        """Whether ``presented`` is a valid key, a revoked one, or neither (constant-time comparison)."""
        self.refresh()
        given = digest(presented)
        stored = self._keys.get(key_id(presented) or "")
        # The digest is compared even for an unknown id, so that the time taken says nothing.
        expected = stored.sha256 if stored is not None else "0" * 64
        if not hmac.compare_digest(given, expected) or stored is None:
            return Check(Verdict.INVALID)
        return Check(Verdict.VALID if stored.active else Verdict.REVOKED, stored)

    def keys(self) -> list[StoredKey]:
        self.refresh()
        return sorted(self._keys.values(), key=lambda k: (k.created_at, k.id))

    def has_active(self) -> bool:
        return any(key.active for key in self.keys())

    def refresh(self, force: bool = False) -> None:
        """Re-read the file if it changed, at most once per check interval (unless ``force``)."""
        now = self._clock()
        if not force and now - self._checked_at < self.check_interval_s:
            return
        with self._lock:
            self._checked_at = now
            if self._stat() != self._seen:
                self._reload()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _reload(self) -> None:
        seen = self._stat()
        try:
            keys = self._read()
        except KeyFileError as exc:
            # Only a hand edit can break the file (writes are atomic): keep what was read last, and say so.
            log.error("%s; keeping the %d keys read before", exc, len(self._keys))
            self._seen = seen
            return
        log.info("API keys re-read from %s: %d active", self.path, sum(k.active for k in keys.values()))
        self._keys, self._seen = keys, seen

    def _read(self) -> dict[str, StoredKey]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}  # no file: no key (a deleted file revokes every key)
        except OSError as exc:
            raise KeyFileError(f"the API key file {self.path} cannot be read ({exc})") from None
        try:
            document = json.loads(text)
            if document.get("version") != FILE_VERSION:
                raise ValueError(f"unknown version {document.get('version')!r}")
            keys = [StoredKey(**entry) for entry in document["keys"]]
            for key in keys:
                # A hand edit must not turn into a failure on every request (a zero rate, a text burst).
                if not (isinstance(key.rate_per_s, int | float) and key.rate_per_s > 0
                        and isinstance(key.burst, int) and key.burst >= 1 and isinstance(key.sha256, str)):
                    raise ValueError(f"key {key.id}: rate_per_s must be above 0, burst at least 1")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise KeyFileError(f"the API key file {self.path} cannot be read ({type(exc).__name__}: {exc})") from None
        return {key.id: key for key in keys}

    # -- writing (ticklake keys) ----------------------------------------------------------------------
    def create(self, name: str, rate_per_s: float, burst: int) -> tuple[str, StoredKey]:
        """A new key: its text (shown once, never stored) and what is stored of it."""
        with self._writing() as keys:
            key_id_ = secrets.token_hex(4)
            while key_id_ in keys:
                key_id_ = secrets.token_hex(4)
            text = f"{KEY_PREFIX}_{key_id_}_{secrets.token_urlsafe(32)}"
            stored = StoredKey(id=key_id_, name=name, sha256=digest(text), created_at=_now(), revoked_at=None,
                               rate_per_s=rate_per_s, burst=burst)
            keys[key_id_] = stored
        return text, stored

    def revoke(self, key_id_: str) -> StoredKey:
        """Revoke a key by id (again is harmless: the first revocation time stays)."""
        with self._writing() as keys:
            if key_id_ not in keys:
                raise UnknownKeyError(key_id_)
            stored = keys[key_id_]
            if stored.active:
                stored = keys[key_id_] = replace(stored, revoked_at=_now())
        return stored

    @contextlib.contextmanager
    def _writing(self) -> Iterator[dict[str, StoredKey]]:
        """The keys, under an exclusive lock, written back atomically when the block ends."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            keys = self._read()
            yield keys
            self._write(keys)
        self.refresh(force=True)

    def _write(self, keys: dict[str, StoredKey]) -> None:
        document: dict[str, Any] = {"version": FILE_VERSION, "keys": [asdict(key) for key in keys.values()]}
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(document, out, indent=2)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


def keys_path(keys_file: str, data_dir: Path) -> Path:
    """Where the keys are: ``api.keys_file``, or ``<data_dir>/api_keys.json``."""
    return Path(keys_file) if keys_file else data_dir / DEFAULT_FILE_NAME


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the API on this machine (127.0.0.0/8, ::1, localhost)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to anything
