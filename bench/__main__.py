"""``python -m bench``: run the benchmark suite (``make bench``, ``make bench-quick``)."""

from bench.cli import main

main()
