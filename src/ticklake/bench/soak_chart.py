"""The soak's chart (``soak.png``): four panels over the soak's time, load steps marked.

matplotlib is an optional extra (``pip install 'ticklake[soak]'``): imported here only, by ``ticklake soak``.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ticklake.bench.soak import StepResult

P99_LIMIT_MS = 200.0


def _float(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def draw(csv_path: Path, steps: list[StepResult], png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    # Per step, per sample time: the platform's totals over its processes, the simulator's, and the
    # platform's own figures. Each step is drawn apart: a line does not join one platform to the next.
    cpu: dict[tuple[int, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    rss: dict[int, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    figures: dict[tuple[int, str], dict[float, float]] = defaultdict(dict)
    step_spans: dict[int, list[float]] = defaultdict(list)
    load_average: dict[float, float] = {}  # the whole machine's: other work competing with the soak
    with csv_path.open() as handle:
        for row in csv.DictReader(handle):
            minute = float(row["elapsed_s"]) / 60
            number = int(row["step"])
            step_spans[number].append(minute)
            cores = _float(row["cpu_cores"])
            if cores is not None:
                cpu[number, row["role"]][minute] += cores
            if row.get("load_average_1m"):
                load_average[minute] = float(row["load_average_1m"])
            if row["role"] == "platform":
                rss[number][minute] += float(row["rss_mb"])
                for key in ("latency_p50_ms", "latency_p99_ms", "backlog"):
                    value = _float(row[key])
                    if value is not None:
                        figures[number, key][minute] = value

    figure, axes = plt.subplots(4, 1, figsize=(11, 11), sharex=True)
    cpu_axis, rss_axis, latency_axis, backlog_axis = axes
    colors = {"platform": "tab:blue", "simulator": "tab:orange", "latency_p99_ms": "tab:red",
              "latency_p50_ms": "tab:green"}

    def line(axis: Any, series: dict[float, float], color: str, label: str | None, style: str = "-") -> None:
        xs = sorted(series)
        axis.plot(xs, [series[x] for x in xs], style, color=color, label=label, linewidth=1)

    labelled: set[str] = set()

    def once(label: str) -> str | None:
        if label in labelled:
            return None
        labelled.add(label)
        return label

    for (_number, role), series in sorted(cpu.items()):
        line(cpu_axis, series, colors[role], once("ticklake up (all its processes)" if role == "platform"
                                                  else "simulator (load generator)"))
    cpu_axis.axhline(0.25, color="grey", linestyle=":", linewidth=1, label="0.25 core (target at 1x)")
    cpu_axis.set_ylabel("CPU (cores)")
    cpu_axis.legend(loc="upper left", fontsize=8)
    if load_average:
        machine = cpu_axis.twinx()
        xs = sorted(load_average)
        machine.plot(xs, [load_average[x] for x in xs], color="grey", linewidth=0.6, alpha=0.6)
        machine.set_ylabel("load average, 1 min (grey)", color="grey", fontsize=8)
    for series in rss.values():
        line(rss_axis, series, "tab:purple", None)
    rss_axis.set_ylabel("RSS of ticklake up (MB)")
    for (_number, key), series in sorted(figures.items()):
        if key == "backlog":
            line(backlog_axis, series, "tab:brown", None)
        else:
            line(latency_axis, series, colors[key], once(key[len("latency_"):-len("_ms")]),
                 "-" if key.endswith("p99_ms") else "--")
    latency_axis.axhline(P99_LIMIT_MS, color="red", linestyle=":", linewidth=1, label="200 ms (p99 target at 10x)")
    latency_axis.set_ylabel("trade → candle (ms)")
    latency_axis.set_yscale("log")
    latency_axis.legend(loc="upper left", fontsize=8)
    backlog_axis.set_ylabel("bus backlog (messages)")
    backlog_axis.set_xlabel("minutes since the soak started")
    by_number = {s.step: s for s in steps}
    for number, minutes in sorted(step_spans.items()):
        start, end = min(minutes), max(minutes)
        step = by_number.get(number)
        for axis in axes:
            axis.axvspan(start, end, color="tab:blue" if number % 2 else "tab:orange", alpha=0.06)
            axis.axvline(start, color="grey", linewidth=0.5)
        if step is not None:
            label = (f"{step.load_per_s:,.0f}/s" + ("" if step.planned else " (beyond)")
                     + ("" if step.held else " behind") + (", p99 > 1 s" if step.slow else ""))
            cpu_axis.text((start + end) / 2, 1.02, label, transform=cpu_axis.get_xaxis_transform(), ha="center",
                          fontsize=8)
    for axis in axes:
        axis.grid(True, alpha=0.3)
    figure.suptitle("ticklake soak: the embedded platform at each load step (trades/s asked)", y=0.995)
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    # A palette of 256 colours draws the same lines in a third of the bytes (pillow comes with matplotlib).
    from PIL import Image

    with Image.open(png_path) as image:
        quantized = image.convert("RGB").quantize(colors=256)
    quantized.save(png_path, optimize=True)
