"""No string named for a container or a process group is interned (docs/limits.md, "Daemon memory").

pathlib interns each part of every path it parses; a part that comes and
goes with each request churns CPython's interned-string table, which then
resizes for good.  The paths built per request are plain strings.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from multihome.cni.fakeexec import FakeExec
from multihome.cni.request import Request
from multihome.daemon.plugingroups import PluginGroups
from multihome.engine.engine import Engine
from multihome.testing.fakeconfig import POD_ARGS, multus_config

CONTAINER = "internprobe0c1d2e3f4a5b6c7d8e9f"


def _interned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = sys.intern

    def intern(text: str) -> str:
        seen.append(text)
        return real(text)

    monkeypatch.setattr(sys, "intern", intern)
    return seen


def _request(command: str, config: dict[str, object]) -> Request:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": CONTAINER,
        "CNI_NETNS": "/run/netns/none",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": POD_ARGS,
    }
    return Request.from_env(env, json.dumps(config).encode())


def test_add_and_del_intern_nothing_named_for_the_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = multus_config(tmp_path)
    engine = Engine(executor=FakeExec({"cluster-plugin": None}))
    seen = _interned(monkeypatch)

    async def cycle() -> None:
        await engine.handle(_request("ADD", config))
        await engine.handle(_request("DEL", config))

    asyncio.run(cycle())
    assert seen, "pathlib no longer interns: this test checks nothing"
    assert [text for text in seen if CONTAINER in text] == []
    assert list((tmp_path / "cni" / "multihome").glob(f"{CONTAINER}*")) == []


def test_plugin_groups_intern_no_group_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    groups = PluginGroups(tmp_path / "groups")
    record = os.path.join(tmp_path, "groups", "987654")
    seen = _interned(monkeypatch)
    groups.started(987654, deadline=1.0, container_id=CONTAINER)
    with open(record) as file:
        assert json.load(file)["pgid"] == 987654
    groups.ended(987654)
    assert not os.path.exists(record)
    assert [text for text in seen if "987654" in text] == []
