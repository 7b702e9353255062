"""The fault matrix's node: a world, a bin dir with a misbehaving plugin, leak accounting."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from multihome.cni.process import SubprocessExec
from multihome.cni.request import Request
from multihome.engine.engine import Engine
from multihome.testing import leaks
from multihome.testing.lab import Lab
from multihome.testing.world import Sandbox, World

BEHAVIOURS = ("ok", "hang", "sigkill", "garbage", "deep", "huge", "fork", "ipam")
#: Seconds a plugin may run in these tests: a hang is cut short, not waited for.
PLUGIN_TIMEOUT = 3.0


@dataclass
class Node:
    """A world whose NAD ``bad`` chains macvlan and the ``misbehave`` plugin."""

    world: World
    bin_dir: Path
    before: leaks.Baseline

    def behave(self, **behaviour: str) -> None:
        """What ``misbehave`` does per command from now on (``ADD="hang"``, ...)."""
        assert set(behaviour.values()) <= set(BEHAVIOURS), behaviour
        (self.bin_dir / "behaviour.json").write_text(json.dumps(behaviour))

    def call(self, command: str, sandbox: Sandbox | None, **config: Any) -> str:
        """One command through the engine, with a short plugin timeout."""
        env = self.world.env(command, sandbox)
        stdin = json.dumps({**self.world.config, **config}).encode()
        engine = Engine(executor=SubprocessExec(timeout=PLUGIN_TIMEOUT))
        return asyncio.run(engine.handle(Request.from_env(env, stdin)))

    def leftovers(self, sandbox: Sandbox) -> leaks.Leftovers:
        return leaks.account(
            sandbox.container_id,
            lab=self.world.lab,
            netns=sandbox.netns,
            before=self.before,
            ipam_dirs=[self.world.ipam_dir],
            cache_dirs=[self.world.cni_dir],
        )

    def assert_clean(self, sandbox: Sandbox, *, root: bool = True) -> None:
        """Nothing left of ``sandbox``; ``root=False`` while other pods hold root links."""
        held = self.leftovers(sandbox)
        leaks.assert_clean(held if root else held.own())

    def record_path(self, sandbox: Sandbox) -> Path:
        return self.world.cni_dir / "multihome" / f"{sandbox.container_id}.json"


@pytest.fixture
def node(lab: Lab) -> Iterator[Node]:
    world = World(lab, mode="engine")
    bin_dir = lab.tmpdir()
    script = bin_dir / "misbehave"
    script.write_text(
        f"#!{sys.executable}\n" + (Path(__file__).parent / "misbehave.py").read_text()
    )
    script.chmod(0o755)
    lan = lab.macvlan_parent("lan")
    world.macvlan_nad("bad", master=lan, subnet=world.lan_subnet(1))
    nad = json.loads((world.manifests / "nad-default-bad.json").read_text())
    conf = json.loads(nad["spec"]["config"])
    conf["plugins"].append({"type": "misbehave"})
    world.nad("bad", conf)
    world.config["binDir"] = str(bin_dir)  # misbehave first, the reference plugins via CNI_PATH
    made = Node(world, bin_dir, leaks.Baseline())
    made.behave()
    # The cluster bridge (and its gateway address) stays after its first
    # use, as on a real node: it is part of the baseline.
    warm = world.pod("warm", "bad")
    made.call("ADD", warm)
    made.call("DEL", warm)
    made.before = leaks.baseline(lab)
    yield made
