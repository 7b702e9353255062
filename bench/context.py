"""What every measurement gets: the run's settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    #: Fewer rounds and pods: the whole suite in under two minutes.
    quick: bool
    #: Where results, logs and the chart go (bench/out by default).
    out: Path

    def pick(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def command(self, name: str) -> str:
        """The command line that reproduces one section."""
        return f"python -m bench --only {name}" + (" --quick" if self.quick else "")
