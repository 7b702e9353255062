"""The daemon's status writer: every pending write at once, each failure on its own backoff."""

from __future__ import annotations

import asyncio
from pathlib import Path

from multihome.daemon.statuswriter import StatusWriter
from multihome.engine import statuswrites


def _pending(cache_dir: Path, container_id: str) -> None:
    statuswrites.save(
        cache_dir,
        statuswrites.PendingStatus(container_id, "default", container_id, "u", "[]"),
        sync=False,
    )


def test_one_refused_write_does_not_hold_back_the_others(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        _pending(tmp_path, name)
    tries: list[str] = []

    async def write(directory: str, container_id: str) -> bool:
        tries.append(container_id)
        if container_id == "a":
            return False  # the API refuses this one
        statuswrites.remove(directory, container_id)
        return True

    async def scenario() -> None:
        writer = StatusWriter(lambda: [str(tmp_path)], write)
        await writer.round()
        assert sorted(tries) == ["a", "b", "c"]
        assert statuswrites.pending_ids(tmp_path) == ["a"]
        _pending(tmp_path, "d")  # a new ADD while "a" waits for its backoff
        await writer.round()
        assert sorted(tries) == ["a", "b", "c", "d"]  # "a" is not due yet

    asyncio.run(scenario())


def test_a_write_that_raises_is_retried_later(tmp_path: Path) -> None:
    _pending(tmp_path, "a")

    async def write(directory: str, container_id: str) -> bool:
        raise OSError("read-only cache dir")

    async def scenario() -> None:
        writer = StatusWriter(lambda: [str(tmp_path)], write)
        await writer.round()
        assert statuswrites.pending_ids(tmp_path) == ["a"]

    asyncio.run(scenario())
