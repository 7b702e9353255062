"""Prometheus metrics and their text exposition format 0.0.4, for the daemon and the webhook.

Our own rather than prometheus-client's: that package's ``__init__`` alone
imports http.server, socketserver, urllib, wsgiref, threading and its
process, platform and gc collectors (+2.9 MiB of resident memory in the
daemon, `bench --only memory`), and its histograms hold a lock and a value
object per bucket and label set (~0.9 MiB for the bench's 111 networks).
What the daemon and the webhook need is small: counters, gauges and
histograms with label names, a registry, collectors that compute families
when scraped, and the text format.  The output is what prometheus-client's
``generate_latest`` writes (counters' ``_total``, ``le`` written as Go does,
labels sorted), so dashboards and alerts see the same series; its parser
checks ours in tests/unit/daemon/test_exposition.py.  No ``_created``
series: the daemon had them turned off, the webhook now drops them too,
and nothing reads them.

No locks: instruments change only on the event loop's thread.  A scrape may
read them from a worker thread (the daemon's collectors read files), so it
takes copies (``dict.copy``, ``list(...)``, done in C under the GIL), and a
histogram's count is the sum of its buckets, so the two always agree.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Generic, Protocol, TypeVar

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Family:
    """One metric as scraped: its samples under one HELP and TYPE.

    ``name`` is the metric's, without the ``_total`` that a counter's samples
    and its HELP and TYPE lines carry (as in prometheus-client).
    """

    name: str
    type: str  # "counter", "gauge" or "histogram"
    help: str
    labelnames: tuple[str, ...] = ()
    #: (name suffix, label values in ``labelnames`` order, extra labels, value).
    samples: list[tuple[str, tuple[str, ...], tuple[tuple[str, str], ...], float]] = field(
        default_factory=list
    )

    def add(self, values: Sequence[str], value: float) -> None:
        """A sample of a counter or gauge family built by a collector."""
        suffix = "_total" if self.type == "counter" else ""
        self.samples.append((suffix, tuple(values), (), value))


class Collector(Protocol):
    def collect(self) -> Iterable[Family]: ...


class Registry:
    """Collectors in the order they were registered; a scrape renders them in it."""

    def __init__(self) -> None:
        self._collectors: list[Collector] = []
        self._names: set[str] = set()

    def register(self, collector: Collector) -> None:
        name = getattr(collector, "name", None)
        if name is not None:
            if name in self._names:
                raise ValueError(f"metric {name!r} is already registered")
            self._names.add(name)
        self._collectors.append(collector)

    def collect(self) -> Iterator[Family]:
        for collector in list(self._collectors):
            yield from collector.collect()

    def exposition(self) -> bytes:
        return render(self.collect())


C = TypeVar("C")


class _Instrument(Generic[C]):
    """A metric with label names; a child (a value) per label-value tuple."""

    type: ClassVar[str]
    _suffix: ClassVar[str] = ""

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        *,
        registry: Registry | None = None,
    ) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], C] = {}
        if not self.labelnames:
            self._children[()] = self._child()
        if registry is not None:
            registry.register(self)

    def _child(self) -> C:
        raise NotImplementedError

    def labels(self, *values: str) -> C:
        if len(values) != len(self.labelnames):
            raise ValueError(
                f"{self.name}: {len(values)} label values for labels {list(self.labelnames)}"
            )
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._child()
        return child

    def _only(self) -> C:
        if self.labelnames:
            raise ValueError(f"{self.name} has labels {list(self.labelnames)}: use .labels(...)")
        return self._children[()]

    def collect(self) -> Iterator[Family]:
        family = Family(self.name, self.type, self.help, self.labelnames)
        for values, child in self._children.copy().items():
            family.samples.extend(
                (suffix, values, extra, value) for suffix, extra, value in self._samples(child)
            )
        yield family

    def _samples(self, child: C) -> Iterable[tuple[str, tuple[tuple[str, str], ...], float]]:
        raise NotImplementedError


class _Value:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0


class CounterChild(_Value):
    __slots__ = ()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError(f"a counter only goes up, not by {amount}")
        self.value += amount


class Counter(_Instrument[CounterChild]):
    type = "counter"

    def _child(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1) -> None:
        self._only().inc(amount)

    def _samples(self, child: CounterChild) -> Iterable[tuple[str, tuple[()], float]]:
        return (("_total", (), child.value),)


class GaugeChild:
    __slots__ = ("_function", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self._function: Callable[[], float] | None = None

    def set(self, value: float) -> None:
        self.value = float(value)

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set_function(self, function: Callable[[], float]) -> None:
        """Read the value from ``function`` at each scrape."""
        self._function = function

    def get(self) -> float:
        return float(self._function()) if self._function is not None else self.value


class Gauge(_Instrument[GaugeChild]):
    type = "gauge"

    def _child(self) -> GaugeChild:
        return GaugeChild()

    def set(self, value: float) -> None:
        self._only().set(value)

    def inc(self, amount: float = 1) -> None:
        self._only().inc(amount)

    def dec(self, amount: float = 1) -> None:
        self._only().dec(amount)

    def set_function(self, function: Callable[[], float]) -> None:
        self._only().set_function(function)

    def _samples(self, child: GaugeChild) -> Iterable[tuple[str, tuple[()], float]]:
        return (("", (), child.get()),)


class HistogramChild:
    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        #: Observations per bucket (not cumulative); the last is +Inf's.
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # A bucket counts the observations less than or equal to its bound.
        self.counts[bisect.bisect_left(self._bounds, value)] += 1
        self.sum += value


class Histogram(_Instrument[HistogramChild]):
    type = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: Registry | None = None,
    ) -> None:
        if "le" in labelnames:
            raise ValueError(f"{name}: 'le' is the buckets' label")
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._bounds = tuple(bounds)
        self._le = tuple(format_value(b) for b in self._bounds)
        super().__init__(name, help, labelnames, registry=registry)

    def _child(self) -> HistogramChild:
        return HistogramChild(self._bounds)

    def observe(self, value: float) -> None:
        self._only().observe(value)

    def _samples(
        self, child: HistogramChild
    ) -> Iterable[tuple[str, tuple[tuple[str, str], ...], float]]:
        total = 0
        for le, count in zip(self._le, list(child.counts), strict=True):
            total += count
            yield "_bucket", (("le", le),), total
        yield "_count", (), total
        yield "_sum", (), child.sum


# -- the text format ---------------------------------------------------------------------


def format_value(value: float) -> str:
    """A sample value or bucket bound as prometheus-client (and Go) write it."""
    value = float(value)
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    # Go switches to an exponent sooner than Python (only positive bounds matter).
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def escape_label_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def render(families: Iterable[Family]) -> bytes:
    """The text exposition format 0.0.4 of ``families``."""
    out: list[str] = []
    for family in families:
        name = family.name + ("_total" if family.type == "counter" else "")
        out.append(f"# HELP {name} {escape_help(family.help)}\n# TYPE {name} {family.type}\n")
        for suffix, values, extra, value in family.samples:
            pairs = sorted((*zip(family.labelnames, values, strict=True), *extra))
            labels = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs)
            braced = f"{{{labels}}}" if labels else ""
            out.append(f"{family.name}{suffix}{braced} {format_value(value)}\n")
    return "".join(out).encode()
