"""The suite's command line: which measurements, how long, where the results go."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from .context import Settings
from .report import Section, draw, print_table, write_json

#: Measurement name -> module (each has ``run(settings) -> Section``), in running order.
MEASUREMENTS = {
    "overhead": "bench.overhead",
    "fanout": "bench.fanout",
    "kube": "bench.kube",
    "throughput": "bench.throughput",
    "memory": "bench.memory",
    "shim": "bench.shimstart",
    "burst": "bench.burst",
}
OUT = Path(__file__).resolve().parent / "out"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="multihome's benchmark suite: each figure next to the same work without it.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under 2 minutes)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these (repeat or comma-separate): {', '.join(MEASUREMENTS)}",
    )
    parser.add_argument("--out", type=Path, default=OUT, help="results directory (bench/out)")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    return parser.parse_args(argv)


def _compile_sources() -> None:
    """Byte-compile the package first: with PYTHONDONTWRITEBYTECODE set (as on
    the CI machines) an edited module is compiled again in every process that
    imports it, and every thin-plugin call and memory probe would measure that."""
    import compileall

    import multihome

    compileall.compile_dir(os.path.dirname(multihome.__file__), quiet=1)


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MEASUREMENTS))
    if unknown:
        sys.exit(f"unknown measurement {', '.join(unknown)}; known: {', '.join(MEASUREMENTS)}")
    if os.geteuid() != 0:
        sys.exit("the benchmarks need root: they build network namespaces and run CNI plugins")
    settings = Settings(quick=args.quick, out=args.out)
    _compile_sources()
    selected = [n for n in MEASUREMENTS if not names or n in names]
    sections: list[Section] = []
    started = time.monotonic()
    for name in selected:
        print(f"-- {name} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        try:
            section: Section = importlib.import_module(MEASUREMENTS[name]).run(settings)
        except Exception as err:
            section = Section(
                name, name, settings.command(name), error=f"{type(err).__name__}: {err}"
            )
            traceback.print_exc()
        section.seconds = time.monotonic() - began
        sections.append(section)
    print_table(sections)
    results = args.out / "results.json"
    write_json(results, sections, argv=sys.argv, quick=args.quick)
    print(f"\nall in {time.monotonic() - started:.0f} s; JSON: {results}")
    if not args.no_chart:
        chart = args.out / "results.png"
        if draw(chart, sections):
            print(f"chart: {chart}")
        else:
            print("no chart: matplotlib is not installed (pip install -e '.[bench]')")
    missed = [f"{s.name}: {r.figure}" for s in sections for r in s.missed]
    if missed:
        print("targets missed: " + "; ".join(missed))
    if any(s.error for s in sections):
        sys.exit(1)
