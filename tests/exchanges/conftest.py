"""Shared paths for the exchange tests: the project's own fixtures and the optional shared recordings."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# <repo>/../shared/testdata/cryptofeed: real 2021 sessions recorded by cryptofeed (not part of the repo).
CRYPTOFEED = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "cryptofeed"
VENUES = ("binance", "kraken", "coinbase")


@pytest.fixture
def cryptofeed_dir() -> Path:
    """The shared cryptofeed recordings; skips the test when they are not on this machine."""
    if not (CRYPTOFEED / "KRAKEN.ws.48.0").is_file():
        pytest.skip(f"shared cryptofeed recordings not found at {CRYPTOFEED}")
    return CRYPTOFEED
