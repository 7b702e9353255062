"""docs/limits.md states the bounds the code has."""

from __future__ import annotations

import inspect
from pathlib import Path

from multihome.cluster.events import EventRecorder
from multihome.cluster.kube import KubeConfig
from multihome.cni import process, request
from multihome.daemon import iothreads
from multihome.engine import cache

DOC = (Path(__file__).parents[2] / "docs" / "limits.md").read_text()


def test_the_documented_bounds_are_the_code_s() -> None:
    assert f"{process.DEFAULT_TIMEOUT:g} s (`DEFAULT_TIMEOUT`)" in DOC
    assert process.DEFAULT_OUTPUT_LIMIT == 256 << 10
    assert "256 KiB each (`DEFAULT_OUTPUT_LIMIT`)" in DOC
    assert cache.MAX_RECORD_BYTES == 4 << 20
    assert "4 MiB (`MAX_RECORD_BYTES`)" in DOC
    assert f"at most {request.MAX_CONTAINER_ID} characters (`MAX_CONTAINER_ID`" in DOC
    assert f"nested at most {request.MAX_STDIN_DEPTH} deep (`MAX_STDIN_DEPTH`)" in DOC
    assert f"| {process._PIPE_GRACE:g} s |" in DOC


def test_the_daemon_memory_bounds_are_the_code_s() -> None:
    assert f"| {iothreads.IO_THREADS} (`IO_THREADS`" in DOC
    assert inspect.signature(EventRecorder).parameters["dedup_size"].default == 1024
    assert KubeConfig.event_dedup_window == 600
    assert "| 1,024 within `eventDedupWindow` (600 s)" in DOC
    assert KubeConfig.event_queue_size == 1000
    assert "| `eventQueueSize` (1000)" in DOC
