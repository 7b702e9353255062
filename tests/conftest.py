"""Shared fixtures: the network-namespace lab and the tier markers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from multihome.testing.lab import Lab, have_ip, is_root

# Property tests: enough examples to find parser holes, bounded for a 2-core CI.
settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("default")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if is_root() and have_ip():
        return
    skip = pytest.mark.skip(reason="needs root and iproute2 for real network namespaces")
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A lab whose namespaces, links and scratch dirs are gone after the test, pass or fail."""
    the_lab = Lab()
    try:
        yield the_lab
    finally:
        the_lab.cleanup()
