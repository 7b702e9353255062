"""Summaries of timings, and running the sides of a comparison interleaved.

A ratio between two code paths only means something when machine noise (a
neighbour VM, the page cache, a CPU frequency step) hits both alike, so the
sides of every comparison run in alternation, round after round, with the
order rotated each round (ABC, BCA, CAB, ...) so that neither side always
follows the other.  Medians and percentiles rather than means: one stalled
fork should not move the figure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: One iteration of one side: named durations in seconds (e.g. {"add": .., "del": ..}).
Timings = Mapping[str, float]


@dataclass(frozen=True)
class Summary:
    """Distribution of one series of durations (seconds) or other values."""

    n: int
    median: float
    p10: float
    p90: float
    p99: float
    minimum: float
    maximum: float
    mean: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no values to summarise")
        ordered = sorted(values)
        return cls(
            n=len(ordered),
            median=statistics.median(ordered),
            p10=percentile(ordered, 10),
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            minimum=ordered[0],
            maximum=ordered[-1],
            mean=statistics.fmean(ordered),
        )

    def ms(self) -> str:
        """``12.3 ms (p10 11.9, p90 13.0)``: a duration for the table."""
        return f"{self.median * 1e3:.1f} ms (p10 {self.p10 * 1e3:.1f}, p90 {self.p90 * 1e3:.1f})"

    def to_dict(self, scale: float = 1.0) -> dict[str, Any]:
        """The fields, each multiplied by ``scale`` (1e3 for milliseconds)."""
        return {k: (v * scale if k != "n" else v) for k, v in asdict(self).items()}


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on sorted values."""
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def paired(numerator: Sequence[float], denominator: Sequence[float]) -> Summary:
    """Per-round ratios of two interleaved sides: noise that hit one round hits both terms."""
    return Summary.of([a / b for a, b in zip(numerator, denominator, strict=True)])


def ratio_text(ratios: Summary) -> str:
    """``1.31 (p10 1.20, p90 1.45)``."""
    return f"{ratios.median:.2f} (p10 {ratios.p10:.2f}, p90 {ratios.p90:.2f})"


def interleaved(
    sides: Mapping[str, Callable[[], Timings]],
    *,
    rounds: int,
    warmup: int = 2,
) -> dict[str, dict[str, list[float]]]:
    """Run each side once per round, the order rotated every round.

    Returns side -> timing name -> values, without the ``warmup`` rounds
    (first calls pay for cold page caches and lazy imports).
    """
    names = list(sides)
    out: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for index in range(warmup + rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            timings = sides[name]()
            if index < warmup:
                continue
            for key, value in timings.items():
                out[name].setdefault(key, []).append(value)
    return out


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn`` took (monotonic, high resolution)."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started
