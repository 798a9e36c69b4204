"""Fixtures for the exchange tests: the optional shared cryptofeed recordings."""

from __future__ import annotations

from pathlib import Path

import pytest

# <repo>/../shared/testdata/cryptofeed: real 2021 sessions recorded by cryptofeed (not part of the repo).
CRYPTOFEED = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "cryptofeed"


@pytest.fixture
def cryptofeed_dir() -> Path:
    """The shared cryptofeed recordings; skips the test when they are not on this machine."""
    if not (CRYPTOFEED / "KRAKEN.ws.48.0").is_file():
        pytest.skip(f"shared cryptofeed recordings not found at {CRYPTOFEED}")
    return CRYPTOFEED
