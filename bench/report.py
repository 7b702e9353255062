"""What a benchmark run produces: a table on stdout, JSON, and a chart when matplotlib is there.

Each measurement returns a `Section`: rows for the table (each figure with
its target and whether it was met), the numbers behind them for the JSON,
optional chart panels, notes, and the command that reproduces it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO


@dataclass
class Row:
    """One figure in the table."""

    figure: str
    value: str
    target: str = ""
    #: None: no target; True/False: met or missed.
    met: bool | None = None


@dataclass
class Panel:
    """One chart panel: bars (with p10-p90 whiskers) or lines over x."""

    title: str
    kind: Literal["bars", "lines"]
    unit: str
    labels: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    x: list[float] = field(default_factory=list)
    xlabel: str = ""
    series: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class Section:
    name: str
    title: str
    command: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    panels: list[Panel] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""

    @property
    def missed(self) -> list[Row]:
        return [r for r in self.rows if r.met is False]


def machine() -> dict[str, Any]:
    """CPU model, cores, kernel, Python: the context a figure needs to be read."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory_kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
    except (OSError, StopIteration, ValueError):
        memory_kib = 0
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": _commit(),
    }


def _commit() -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent,
    )
    return proc.stdout.strip()


def print_table(sections: list[Section], out: TextIO = sys.stdout) -> None:
    width = max((len(r.figure) for s in sections for r in s.rows), default=20)
    vwidth = max((len(r.value) for s in sections for r in s.rows), default=20)
    for section in sections:
        print(f"\n== {section.title}  [{section.seconds:.0f} s]", file=out)
        print(f"   reproduce: {section.command}", file=out)
        if section.error:
            print(f"   FAILED: {section.error}", file=out)
        for row in section.rows:
            mark = {None: "", True: "ok", False: "MISSED"}[row.met]
            target = f"target {row.target}" if row.target else ""
            print(
                f"   {row.figure:<{width}}  {row.value:<{vwidth}}  {target:<14} {mark}".rstrip(),
                file=out,
            )
        for note in section.notes:
            print(f"   note: {note}", file=out)


def write_json(path: Path, sections: list[Section], *, argv: list[str], quick: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": machine(),
        "argv": argv,
        "quick": quick,
        "sections": {s.name: asdict(s) for s in sections},
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")


def draw(path: Path, sections: list[Section]) -> bool:
    """One PNG with every panel; False without matplotlib (the ``bench`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [(s, p) for s in sections for p in s.panels]
    if not panels:
        return False
    columns = 2 if len(panels) > 1 else 1
    rows = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(6.4 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (section, panel) in zip(axes.flat, panels, strict=False):
        ax.set_title(panel.title, fontsize=10)
        ax.set_ylabel(panel.unit)
        if panel.kind == "bars":
            positions = list(range(len(panel.labels)))
            errors = None
            if panel.low and panel.high:
                errors = [
                    [v - lo for v, lo in zip(panel.values, panel.low, strict=True)],
                    [hi - v for v, hi in zip(panel.values, panel.high, strict=True)],
                ]
            ax.bar(positions, panel.values, yerr=errors, capsize=4, color="#4c72b0")
            ax.set_xticks(positions, panel.labels, fontsize=8)
        else:
            for name, ys in panel.series.items():
                ax.plot(panel.x[: len(ys)], ys, marker="o", markersize=3, label=name)
            ax.set_xlabel(panel.xlabel)
            ax.legend(fontsize=8, loc="lower right")
            ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
        ax.text(
            0.99,
            0.98,
            section.command.replace("python -m ", ""),
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=7,
            color="grey",
        )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
