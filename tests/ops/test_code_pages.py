"""Releasing the embedded engine's start-up code from resident memory (ticklake.ops.code_pages): the
process's RSS falls, and the engine goes on answering (what runs again comes back from the file)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.processes import REPO, env_for

PROBE = """
import json, sys
import clickhouse_connect
from ticklake.ops.code_pages import release_code_pages

def rss_file_kb():
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1])

client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
client.command("CREATE DATABASE IF NOT EXISTS probe ENGINE = Atomic")
client.command("CREATE TABLE IF NOT EXISTS probe.t (n UInt64) ENGINE = MergeTree ORDER BY n")
client.command("INSERT INTO probe.t SELECT number FROM numbers(1000)")
before = rss_file_kb()
advised = release_code_pages()
after = rss_file_kb()
answer = client.query("SELECT sum(n), count() FROM probe.t").result_rows[0]
print(json.dumps({"before": before, "after": after, "advised": advised, "answer": list(answer),
                  "again": release_code_pages("no-such-library.so")}))
"""


def test_the_engine_code_that_ran_once_leaves_rss_and_the_engine_still_answers(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "chdb")], cwd=REPO, env=env_for(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["advised"] > 100 << 20  # the library's read-only mappings, hundreds of MB of address space
    assert figures["after"] < figures["before"] - 50_000, figures  # at least ~50 MB of resident code left
    assert figures["answer"] == [499500, 1000]  # the code that runs again comes back from the file
    assert figures["again"] == 0  # no such library mapped: nothing advised
