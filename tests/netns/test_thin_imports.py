"""The thin plugin's ADD and DEL in Kubernetes mode import nothing they do not use.

Each call of ``multihome-cni`` is a new interpreter, so every import is paid
on every call: the real plugin as a child process (a hook lists its modules
at exit), real namespaces and plugins, the API double behind a kubeconfig in
JSON.  A pod whose NADs name no resourceName needs no DRA, a JSON kubeconfig
no PyYAML, and nothing of the daemon's or the doctor's stack belongs here.
A DEL that has its record needs no planning layer either: it runs what the
record names.
The same hook sees the cyclic collector as the call leaves it: off, with
what the imports made frozen (multihome.thin.main).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from multihome.testing.apiserver import run_in_thread
from multihome.testing.lab import Lab
from multihome.testing.world import World

pytestmark = pytest.mark.netns

HEAVY = {
    "yaml",
    "prometheus_client",
    "click",
    "grpclib",
    "multihome.cluster.dra",
    "multihome.cluster.podresources",
    "multihome.daemon",
    "multihome.doctor",
    "aiohttp",
    "tempfile",  # shutil and the compression modules with it (atomicfile does without)
}
#: What only planning, pre-flight, verification and the network-status need.
PLANNING = {
    "multihome.networks.attachment",
    "multihome.networks.selection",
    "multihome.networks.validation",
    "multihome.networks.status",
    "multihome.networks.plugins",
    "multihome.engine.hotplug",
    "multihome.engine.probing",
}

LIST_MODULES = (
    "import atexit, gc, sys\n"
    "def listing():\n"
    "    state = f'gc-enabled={gc.isenabled()} gc-frozen={gc.get_freeze_count()}'\n"
    "    open(sys.argv[1], 'w').write('\\n'.join([state, *sorted(sys.modules)]))\n"
    "atexit.register(listing)\n"
    "from multihome.thin import main\n"
    "main()\n"
)


def _heavy(modules: Path, heavy: set[str] = HEAVY) -> list[str]:
    names = modules.read_text().splitlines()[1:]
    return sorted(n for n in names if any(n == h or n.startswith(h + ".") for h in heavy))


def _collector(modules: Path) -> tuple[bool, int]:
    """The cyclic collector at exit: on?, and how many objects are frozen."""
    state = dict(kv.split("=") for kv in modules.read_text().split("\n", 1)[0].split())
    return state["gc-enabled"] == "True", int(state["gc-frozen"])


def test_a_thin_add_and_del_import_nothing_heavy(lab: Lab, tmp_path: Path) -> None:
    world = World(lab, mode="thin")
    world.macvlan_nad("nad-a", master=lab.macvlan_parent("lan"), subnet=world.lan_subnet(1))
    sandbox = world.pod("web", "nad-a")
    with run_in_thread() as api:
        for path in sorted(world.manifests.glob("*.json")):
            obj = json.loads(path.read_text())
            created = api.create(obj)
            if obj["kind"] == "Pod":
                sandbox.uid = created["metadata"]["uid"]
        kubeconfig = tmp_path / "kubeconfig.json"
        as_yaml = api.write_kubeconfig(tmp_path / "kubeconfig")
        kubeconfig.write_text(json.dumps(yaml.safe_load(as_yaml.read_text())))
        config = {k: v for k, v in world.config.items() if k != "manifestDir"}
        config["kubeconfig"] = str(kubeconfig)
        for command in ("ADD", "DEL"):
            modules = tmp_path / f"modules-{command}"
            proc = subprocess.run(
                [sys.executable, "-c", LIST_MODULES, str(modules)],
                input=json.dumps(config).encode(),
                env={**world.env(command, sandbox), "PATH": os.environ.get("PATH", "")},
                capture_output=True,
                check=False,
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr
            if command == "ADD":
                # It did the whole ADD: interfaces, and the status through the API.
                assert set(lab.links(sandbox.netns)) == {"lo", "eth0", "net1"}
                assert api.get("pods", namespace="default", name="web")["metadata"][
                    "annotations"
                ].get("k8s.v1.cni.cncf.io/network-status")
            assert _heavy(modules) == [], command
            if command == "ADD":
                assert _heavy(modules, PLANNING), "the listing would see the planning layer"
            else:
                assert _heavy(modules, PLANNING) == []
            # The collector stays off for the call and what it made is frozen
            # before the exit (multihome.thin.main says why).
            enabled, frozen = _collector(modules)
            assert not enabled and frozen > 10_000, (command, enabled, frozen)
    assert set(lab.links(sandbox.netns)) == {"lo"}
    assert world.allocations() == {}
    assert world.cached_containers() == []
