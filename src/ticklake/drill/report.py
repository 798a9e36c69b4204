"""The drill's table (Markdown, so that it can go into the docs as printed) and its JSON."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ticklake.drill.modes import TARGET_MTTR_S, Outcome


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages * page / 2**30:.0f} GiB"
    except (OSError, ValueError):
        memory = ""
    return f"{platform.machine()}, {os.cpu_count()} cores ({cpu}){memory}, {platform.system()} " \
           f"{platform.release()}, Python {platform.python_version()}"


def _s(value: float | None) -> str:
    return "not seen" if value is None else f"{value:.1f}"


def _n(value: int | None) -> str:
    return "?" if value is None else str(value)


def table(outcomes: list[Outcome]) -> list[str]:
    lines = ["| mode | detected by | detect (s) | down (s) | first write (s) | stored (s) | MTTR (s) | "
             "backfilled (s) | cold tier resumed (s) | lost | duplicated | candles differing | cold duplicates | "
             "result |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        failures = o.failures()
        cold = _s(o.cold_resumed_s) if o.cold else "-"
        lines.append(f"| {o.mode} | {o.detected_by or '-'} | {_s(o.detected_s)} | {_s(o.outage_s)} | "
                     f"{_s(o.first_write_s)} | {_s(o.stored_s)} | {_s(o.mttr_s)} | "
                     f"{_s(o.backfilled_s)} | {cold} | {_n(o.lost)} | {_n(o.duplicated)} | {_n(o.candle_diffs)} | "
                     f"{_n(o.cold_duplicates) if o.cold_duplicates is not None else '-'} | "
                     f"{'ok' if not failures else 'FAILED: ' + ', '.join(failures)} |")
    return lines


def legend() -> list[str]:
    return [
        f"Targets: MTTR < {TARGET_MTTR_S:g} s for every mode; lost, duplicated, candles differing and cold "
        "duplicates 0.",
        "detect: from the fault's start to ticklake showing it (the signal named); down: from the fault's start "
        "until the role or service was back (answering) or the outage ended; first write: from the kill or the "
        "outage's end to the ingester's first batch written after it; stored: from the same moment until every "
        "market had a trade made after it committed in the warehouse (read from the warehouse after the run: "
        "what MTTR would be, read without the API); MTTR: from the kill (kills, "
        "restarts) or the outage's end to the first trade stored with an exchange time after it, in every "
        "market; backfilled: from the same moment until every trade the venues' tapes hold up to the fault's "
        "end is stored; cold tier resumed: until the next successful offload of silver trades; lost, duplicated, "
        "candles (one-minute, overlapping the mode's window) counted against the tapes and a recomputation from "
        "the stored trades once the run was over.",
    ]


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, default=str))


def outcome_dict(outcome: Outcome) -> dict[str, Any]:
    data = asdict(outcome)
    data["failures"] = outcome.failures()
    return data
