"""The bench's ``segments`` stage: every segment of trade -> candle is measured on the real platform
(embedded bus; the broker side runs the same code with a Kafka bus), and the segments add up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO, env_for
from ticklake.bench.segment_stages import SEGMENTS


@pytest.mark.slow
def test_each_segment_of_trade_to_candle_is_measured_on_the_embedded_platform(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "ticklake.bench.segment_stages", "segments",
                             str(tmp_path / "data"), "4", "200"], env=env_for(tmp_path / "data"), cwd=REPO,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["bus"] == "embedded" and report["trades"] > 0 and report["batches"] > 0
    segments = report["segments"]
    # Every segment but the broker's own insert, with samples and p50 <= p99.
    assert set(segments) == set(SEGMENTS) - {"bus positions insert"}
    assert all(s["n"] > 0 and 0 <= s["p50_ms"] <= s["p99_ms"] for s in segments.values())
    # The parts sit inside the whole: a trade's receive -> parse and bus -> ingest are within its
    # receive -> committed.
    whole = segments["receive -> committed"]["p50_ms"]
    assert segments["of which the parse"]["p50_ms"] <= segments["receive -> parse"]["p50_ms"] < whole
    assert segments["bus -> ingest"]["p50_ms"] < whole
    # The batching window (ingest.flush_interval_ms, 100 ms) is most of bus -> ingest on a quiet bus.
    assert segments["bus -> ingest"]["p99_ms"] >= 50
    gold = report["gold_view"]
    assert gold["batches"] > 0 and gold["gold_rows"] > 0
    assert gold["silver_alone"]["n"] == gold["silver_and_gold"]["n"] == gold["batches"]
