"""The daemon's ADD leaves its status to the writer; a DEL right after is never overtaken."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from multihome.cluster.source import EventType, Object
from multihome.cni.errors import CNIError, Code
from multihome.cni.fakeexec import Call, FakeExec
from multihome.engine import statuswrites
from multihome.engine.engine import Engine
from multihome.networks.config import MultusConfig
from multihome.testing.fakeconfig import multus_config, request

POD: Object = {"metadata": {"name": "web", "namespace": "default", "uid": "u1"}}


class Gated:
    """A source whose non-empty status writes wait for ``open``; it records every write."""

    def __init__(self) -> None:
        self.writes: list[str | None] = []
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        self.events: list[str] = []

    async def get_pod(self, namespace: str, name: str, *, uid: str = "") -> Object | None:
        return POD

    async def get_nad(self, namespace: str, name: str) -> Object | None:
        return None

    async def set_network_status(self, pod: Object, status: str | None) -> None:
        if status is not None:
            self.entered.set()
            await self.open.wait()
        self.writes.append(status)

    async def emit_event(self, pod: Object, *, type: EventType, reason: str, message: str) -> None:
        self.events.append(reason)


def _setup(tmp_path: Path) -> tuple[Engine, Gated, dict[str, Any], Path]:
    config = multus_config(tmp_path)
    source = Gated()
    engine = Engine(
        source=source, executor=FakeExec({"cluster-plugin": None}), status_in_background=True
    )
    return engine, source, config, tmp_path / "cni" / "multihome"


def _del_plugin(tmp_path: Path, behaviour: Any) -> tuple[Engine, Gated, dict[str, Any], Path]:
    engine, source, config, cache_dir = _setup(tmp_path)
    engine.executor = FakeExec({"cluster-plugin": behaviour})
    return engine, source, config, cache_dir


async def _run(engine: Engine, command: str, config: dict[str, Any]) -> None:
    await engine.run(request(command, config), MultusConfig.parse(json.dumps(config).encode()))


def test_the_add_answers_without_waiting_for_the_api(tmp_path: Path) -> None:
    async def scenario() -> None:
        engine, source, config, cache_dir = _setup(tmp_path)
        await _run(engine, "ADD", config)  # the gate is shut: a waiting ADD would hang
        assert source.writes == []
        assert statuswrites.pending_ids(cache_dir) == ["c1"]
        source.open.set()
        assert await engine.write_pending_one(cache_dir, "c1")
        assert [json.loads(s)[0]["name"] for s in source.writes if s] == ["cluster"]
        assert statuswrites.pending_ids(cache_dir) == []

    asyncio.run(scenario())


def test_a_del_runs_its_plugins_while_a_status_write_is_in_flight_and_clears_after_it(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        deleted = asyncio.Event()

        def plugin(call: Call) -> Any:
            if call.command == "DEL":
                deleted.set()
                return None
            return {"cniVersion": "1.0.0"}

        engine, source, config, cache_dir = _del_plugin(tmp_path, plugin)
        await _run(engine, "ADD", config)
        writer = asyncio.create_task(engine.write_pending_one(cache_dir, "c1"))
        await source.entered.wait()  # the writer holds the status lock, its PATCH in flight
        delete = asyncio.create_task(_run(engine, "DEL", config))
        async with asyncio.timeout(30):
            await deleted.wait()  # the plugins' DEL does not wait for the write
        assert source.writes == []
        assert not delete.done()  # its clearing does
        source.open.set()
        assert await writer
        await delete
        # The ADD's status landed first; the DEL's clearing is the last word.
        assert len(source.writes) == 2 and source.writes[1] is None
        assert list(cache_dir.glob("c1*")) == []

    asyncio.run(scenario())


def test_a_status_write_after_the_del_writes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        engine, source, config, cache_dir = _setup(tmp_path)
        await _run(engine, "ADD", config)
        await _run(engine, "DEL", config)  # before the writer got to it
        source.open.set()
        assert await engine.write_pending_one(cache_dir, "c1")
        assert source.writes == [None]  # only the DEL's clearing, never the late status

    asyncio.run(scenario())


def test_a_del_clears_the_status_while_its_plugins_run(tmp_path: Path) -> None:
    async def scenario() -> None:
        held, release = asyncio.Event(), asyncio.Event()

        async def plugin(call: Call) -> Any:
            if call.command == "DEL":
                held.set()
                await release.wait()
                return None
            return {"cniVersion": "1.0.0"}

        engine, source, config, cache_dir = _del_plugin(tmp_path, plugin)
        await _run(engine, "ADD", config)
        delete = asyncio.create_task(_run(engine, "DEL", config))
        await held.wait()
        for _ in range(20):  # the PATCH needs a few turns of the loop, not time
            if source.writes:
                break
            await asyncio.sleep(0)
        assert source.writes == [None]  # cleared while the plugin's DEL still runs
        assert not delete.done()  # and the DEL answers only after its plugins
        release.set()
        await delete
        assert list(cache_dir.glob("c1*")) == []

    asyncio.run(scenario())


def test_a_failed_del_still_clears_the_status_and_keeps_the_record(tmp_path: Path) -> None:
    async def scenario() -> None:
        def plugin(call: Call) -> Any:
            if call.command == "DEL":
                raise CNIError(Code.IO_FAILURE, "cannot delete")
            return {"cniVersion": "1.0.0"}

        engine, source, config, cache_dir = _del_plugin(tmp_path, plugin)
        await _run(engine, "ADD", config)
        with pytest.raises(CNIError) as failed:
            await _run(engine, "DEL", config)
        assert failed.value.code == Code.TRY_AGAIN_LATER
        assert source.writes == [None]  # the sandbox is going away, whatever the plugins do
        assert [p.name for p in cache_dir.glob("c1*")] == ["c1.json"]  # what failed stays

    asyncio.run(scenario())
