"""kill -9 in the middle of inserts, then restart: no candle disagrees with silver, nothing is lost
or doubled, and the data of every earlier run survived."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _worker(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "TZ": "UTC"}
    return subprocess.Popen([sys.executable, "-m", "tests.warehouse.crash_worker", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_9_during_inserts_then_restart_repairs_every_layer(tmp_path: Path) -> None:
    path = str(tmp_path / "clickhouse")
    rng = random.Random(20261126)
    for round_number in range(1, 9):
        worker = _worker("write", path, str(round_number))
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready", worker.stderr.read() if worker.stderr else ""
        assert worker.stdout.readline().strip() == "batch"
        time.sleep(rng.uniform(0.0, 0.4))  # lands mid-insert much of the time: a batch takes ~10-60 ms
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)

    checker = _worker("check", path)
    out, err = checker.communicate(timeout=300)
    assert checker.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["repaired_again"] == {"frames": 0, "silver": 0, "gold_windows": 0}, report
    assert report["bronze_equals_raw"], report
    assert report["bronze"] == report["bronze_unique"], report
    assert report["silver"] == report["silver_unique"], report
    assert report["silver_and_dead_cover_bronze"], report
    assert report["dead"] > 0, report  # the worker sends some zero prices
    assert report["candle_mismatches"] == 0, report
    assert report["rounds_with_data"] == list(range(1, 9)), report
