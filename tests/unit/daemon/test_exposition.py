"""The metrics text format: what prometheus-client writes and what Prometheus parses.

prometheus-client (a dev dependency only) is the independent check: its
``generate_latest`` writes the text the daemon wrote before, its parser
reads ours back.
"""

from __future__ import annotations

import math

import prometheus_client
import pytest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from multihome.daemon import exposition
from multihome.daemon.exposition import Counter, Family, Gauge, Histogram, Registry

_VALUES = (0, 1, 1.0, 0.5, 0.005, 0.0005, 2.5, 30, 120.0, -3.25, 1e-9, 123456.0, 1234567.0,
           1e7, 123456789.5, 2**53, math.inf, -math.inf, math.nan)  # fmt: skip


@pytest.mark.parametrize("value", _VALUES)
def test_values_are_written_as_prometheus_client_writes_them(value: float) -> None:
    assert exposition.format_value(value) == floatToGoString(value)


def test_bounds_and_values_read_as_prometheus_does() -> None:
    assert exposition.format_value(0.005) == "0.005"
    assert exposition.format_value(1) == "1.0"
    assert exposition.format_value(math.inf) == "+Inf"
    assert exposition.format_value(math.nan) == "NaN"
    assert exposition.format_value(12345678.0) == "1.2345678e+07"


def test_label_values_and_help_are_escaped() -> None:
    registry = Registry()
    counter = Counter("odd", 'Help with a \\ backslash,\na newline and "quotes"', ["name"],
                      registry=registry)  # fmt: skip
    tricky = 'back\\slash "quoted"\nnext line'
    counter.labels(tricky).inc()
    text = registry.exposition().decode()
    assert '# HELP odd_total Help with a \\\\ backslash,\\na newline and "quotes"\n' in text
    assert 'odd_total{name="back\\\\slash \\"quoted\\"\\nnext line"} 1.0\n' in text
    [family] = text_string_to_metric_families(text)
    assert family.documentation == 'Help with a \\ backslash,\na newline and "quotes"'
    [sample] = family.samples
    assert sample.labels == {"name": tricky}
    assert sample.value == 1


def test_the_same_text_as_prometheus_client() -> None:
    def fill(c: type, g: type, h: type, registry: object) -> None:
        requests = c("requests", "Requests by code", ["method", "code"], registry=registry)
        requests.labels("POST", "200").inc()
        requests.labels("GET", "500").inc(3)
        c("plain", "No labels", registry=registry).inc(2.5)
        c("unused", "A labelled counter nothing counted yet", ["x"], registry=registry)
        g("depth", "A gauge", registry=registry).set(7)
        g("live", "A gauge read when scraped", registry=registry).set_function(lambda: 4)
        seconds = h("seconds", "Time", ["network"], buckets=(0.005, 0.5, 1.0, 30.0),
                    registry=registry)  # fmt: skip
        for value in (0.001, 0.005, 0.7, 100.0):
            seconds.labels("ns/a").observe(value)
        seconds.labels("ns/b").observe(0.2)
        h("idle", "An unlabelled histogram", buckets=(1.0,), registry=registry).observe(0.5)

    theirs = prometheus_client.CollectorRegistry()
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        fill(prometheus_client.Counter, prometheus_client.Gauge, prometheus_client.Histogram,
             theirs)  # fmt: skip
        api = CounterMetricFamily("api", "By verb", labels=["verb"])
        api.add_metric(["get"], 5)
        theirs.register(type("C", (), {"collect": lambda self: [api]})())
        expected = prometheus_client.generate_latest(theirs)
    finally:
        prometheus_client.enable_created_metrics()  # type: ignore[no-untyped-call]

    ours = Registry()
    fill(Counter, Gauge, Histogram, ours)
    family = Family("api", "counter", "By verb", ("verb",))
    family.add(["get"], 5)
    ours.register(type("C", (), {"collect": lambda self: [family]})())
    assert ours.exposition().decode() == expected.decode()


def test_misuse_is_refused() -> None:
    registry = Registry()
    counter = Counter("c", "help", ["a"], registry=registry)
    with pytest.raises(ValueError, match="label values"):
        counter.labels("1", "2")
    with pytest.raises(ValueError, match=r"use \.labels"):
        counter.inc()
    with pytest.raises(ValueError, match="only goes up"):
        counter.labels("1").inc(-1)
    with pytest.raises(ValueError, match="already registered"):
        Counter("c", "again", registry=registry)
    with pytest.raises(ValueError, match="'le'"):
        Histogram("h", "help", ["le"], buckets=(1.0,))
