"""``ticklake soak``: the real command, short, against the real platform and simulator processes; and
the quantiles it reads from the platform's histogram."""

from __future__ import annotations

import csv
import json
import struct
from collections import defaultdict
from pathlib import Path

import pytest

from tests.support.processes import env_for, ticklake
from ticklake.bench.soak_probe import quantile, share_within

INF = float("inf")


def test_quantiles_are_read_from_the_buckets_observed_between_two_readings() -> None:
    before = {0.1: 50.0, 0.2: 60.0, 0.5: 60.0, INF: 60.0}
    # Since then: 100 more observations, 40 up to 100 ms, 50 in (100, 200] ms, 9 in (200, 500] ms, 1 above.
    after = {0.1: 90.0, 0.2: 150.0, 0.5: 159.0, INF: 160.0}
    assert quantile(before, after, 0.5) == pytest.approx(0.1 + 0.1 * (50 - 40) / 50)
    assert quantile(before, after, 0.99) == pytest.approx(0.2 + 0.3 * (99 - 90) / 9)
    assert quantile(before, after, 0.999) == 0.5  # in the +Inf bucket: the last finite bound
    assert share_within(before, after, 0.2) == pytest.approx(0.9)
    assert quantile(after, after, 0.99) is None  # nothing observed in between


def test_bad_options_are_refused_with_the_reason(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data")
    result = ticklake("soak", "--loads", "50,0", "--out", str(tmp_path / "out"), env=env)
    assert result.returncode == 2
    assert "--loads needs at least one rate above 0" in result.stderr
    result = ticklake("soak", "--duration", "1", "--interval", "1", "--out", str(tmp_path / "out"), env=env)
    assert result.returncode == 2
    assert "at least two sampling intervals" in result.stderr
    assert not (tmp_path / "out").exists()


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.slow
def test_a_short_soak_writes_samples_of_every_process_at_every_load_and_a_chart(tmp_path: Path) -> None:
    out = tmp_path / "soak"
    result = ticklake("soak", "--duration", "10", "--interval", "1", "--loads", "20,40", "--no-beyond", "--out",
                      str(out), env=env_for(tmp_path / "data"), timeout=240)
    # 1: a criterion missed (this machine may be busy); the files are written either way.
    assert result.returncode in (0, 1), result.stderr[-3000:]
    assert "pass criteria:" in result.stdout and "maximum sustained rate on this machine" in result.stdout

    rows = list(csv.DictReader((out / "soak.csv").open()))
    by_step_role: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_step_role[row["load_per_s"], row["role"]].append(row)
    assert set(by_step_role) == {(load, role) for load in ("20", "40") for role in ("platform", "simulator")}
    for (load, role), samples in by_step_role.items():
        assert len(samples) >= 8, (load, role)  # 10 s sampled every second (a late sample may be skipped)
        assert all(float(s["rss_mb"]) > 0 for s in samples)
        cores = [float(s["cpu_cores"]) for s in samples if s["cpu_cores"]]
        assert len(cores) >= len(samples) - 1 and all(0 <= c < 8 for c in cores)
        if role == "platform":
            assert sum(cores) > 0  # it did work
            assert all(float(s["rss_mb"]) > 100 for s in samples)  # chdb alone maps more than that
            # Once trades flow, every interval with stored trades has its latency.
            flowing = [s for s in samples if s["stored_per_s"] and float(s["stored_per_s"]) > 0]
            assert len(flowing) >= len(samples) // 2
            assert all(s["latency_p99_ms"] and 0 < float(s["latency_p50_ms"]) <= float(s["latency_p99_ms"])
                       for s in flowing)
            assert all(s["backlog"] != "" and int(s["backlog"]) >= 0 for s in samples)

    report = json.loads((out / "soak.json").read_text())
    assert [s["load_per_s"] for s in report["steps"]] == [20.0, 40.0]
    assert all(s["stored_per_s"] > 0 and s["latency_p99_ms"] > 0 and s["platform_cores"] > 0 for s in report["steps"])
    criteria = {v["criterion"]: v["verdict"] for v in report["verdicts"]}
    assert len(criteria) == 4  # RSS at each load, p99 at the last, cores at the first
    assert all(verdict == "not judged" for name, verdict in criteria.items() if name.startswith("no RSS growth"))

    assert _png_size(out / "soak.png") == (1100, 1100)
    assert (out / "soak.png").stat().st_size > 30_000
