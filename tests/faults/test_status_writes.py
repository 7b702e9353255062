"""ADD under a failing network-status write or a failing final cache save.

The interfaces and the status are separate promises: a failure to attach
or to persist what DEL needs rolls everything back; a status write that
fails neither fails the pod nor is forgotten (`multihome.engine.statuswrites`).
"""

from __future__ import annotations

import errno
import json
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from multihome.cluster.source import STATUS_ANNOTATION
from multihome.cni.errors import CNIError
from multihome.engine import statuswrites
from multihome.engine.cache import AttachmentCache
from multihome.testing import leaks
from multihome.testing.apiserver import run_in_thread
from multihome.testing.daemon import DaemonProcess, shim_binary
from multihome.testing.gate import wait_for
from multihome.testing.lab import Lab
from multihome.testing.world import Sandbox, World

pytestmark = pytest.mark.netns


def test_unwritable_status_file_leaves_the_pod_attached_and_check_writes_it_later(
    lab: Lab,
) -> None:
    world = World(lab, mode="thin")
    lan = lab.macvlan_parent("lan")
    world.macvlan_nad("nad-a", master=lan, subnet=world.lan_subnet(1))
    before = leaks.baseline(lab)
    pod = world.pod("web", "nad-a")
    blocker = world.manifests / "status"
    blocker.write_text("not a directory")  # the status file cannot be written

    world.add(pod)  # answers ok: the networks work

    cache_dir = world.cni_dir / "multihome"
    assert {"eth0", "net1"} <= set(lab.links(pod.netns))
    assert statuswrites.pending_ids(cache_dir) == [pod.container_id]
    [warning] = [e for e in world.events() if e["type"] == "Warning"]
    assert warning["reason"] == "NetworkStatusPending"
    assert world.network_status(pod) is None

    blocker.unlink()
    world.check(pod)  # thin mode: the next CHECK writes what is owed

    assert [s["interface"] for s in world.network_status(pod) or []] == ["eth0", "net1"]
    assert statuswrites.pending_ids(cache_dir) == []
    world.delete(pod)
    leaks.assert_clean(world.leftovers(pod, before))


def test_del_removes_a_pending_status_and_gc_retries_the_others(lab: Lab) -> None:
    world = World(lab, mode="thin")
    before = leaks.baseline(lab)
    gone, kept = world.pod("gone"), world.pod("kept")
    blocker = world.manifests / "status"
    blocker.write_text("not a directory")
    world.add(gone)
    world.add(kept)
    cache_dir = world.cni_dir / "multihome"
    assert statuswrites.pending_ids(cache_dir) == sorted([gone.container_id, kept.container_id])

    world.delete(gone)  # first thing a DEL does: nothing of its ADD may land later
    assert statuswrites.pending_ids(cache_dir) == [kept.container_id]
    blocker.unlink()
    world.gc([kept])

    assert world.network_status(gone) is None
    assert world.network_status(kept) is not None
    assert statuswrites.pending_ids(cache_dir) == []
    world.delete(kept)
    for pod in (gone, kept):
        leaks.assert_clean(world.leftovers(pod, before))


def test_a_final_cache_save_that_fails_rolls_the_add_back(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(lab, mode="engine")
    lan = lab.macvlan_parent("lan")
    world.macvlan_nad("nad-a", master=lan, subnet=world.lan_subnet(1))
    before = leaks.baseline(lab)
    pod = world.pod("web", "nad-a")
    save = AttachmentCache.save
    saves: list[int] = []

    def full_after_the_first(cache: AttachmentCache, record: Any, **kw: Any) -> None:
        saves.append(1)
        if len(saves) > 1:  # the plan fits; the record with the results does not
            raise OSError(errno.ENOSPC, "No space left on device")
        save(cache, record, **kw)

    monkeypatch.setattr(AttachmentCache, "save", full_after_the_first)

    with pytest.raises((CNIError, OSError)):
        world.add(pod)

    assert len(saves) == 2
    leaks.assert_clean(world.leftovers(pod, before))
    assert world.network_status(pod) is None


# -- the daemon and the API double ---------------------------------------------------------


def metric(address: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not served")


def api_pod(api: Any, world: World, pod: Sandbox) -> None:
    path = world.manifests / f"pod-{pod.namespace}-{pod.pod}.json"
    doc = json.loads(path.read_text())
    doc["spec"]["nodeName"] = "node1"
    pod.uid = api.create(doc)["metadata"]["uid"]


def annotation(api: Any, pod: Sandbox) -> str | None:
    written = api.get("pods", namespace=pod.namespace, name=pod.pod) or {}
    value = (written.get("metadata", {}).get("annotations") or {}).get(STATUS_ANNOTATION)
    return value if isinstance(value, str) else None


def test_daemon_keeps_writing_the_status_until_the_api_takes_it(lab: Lab, tmp_path: Path) -> None:
    if not shim_binary().exists():
        pytest.skip("the shim is not built: make -C shim")
    with ExitStack() as stack:
        api = stack.enter_context(run_in_thread(tokens=["t0k3n"]))
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        daemon = stack.enter_context(
            DaemonProcess(
                config={
                    "kubeconfig": str(kubeconfig),
                    "nodeName": "node1",
                    "metricsPort": 0,
                    "metricsAddress": "127.0.0.1",
                    # An ADD waits a quarter of this for its status write.
                    "requestTimeoutSeconds": 8,
                }
            )
        )
        world = World(lab, mode="shim", socket_dir=daemon.socket_dir)
        del world.config["manifestDir"]
        before = leaks.baseline(lab)
        web, brief = world.pod("web"), world.pod("brief")
        api_pod(api, world, web)
        api_pod(api, world, brief)
        wait_for("the daemon's watch cache", lambda: daemon.info()["kube"]["pods"] == 2)
        address = daemon.info()["metrics"]
        cache_dir = world.cni_dir / "multihome"
        api.set_tokens("another")  # every request answered 401 from now on

        world.add(web)
        world.add(brief)

        assert statuswrites.pending_ids(cache_dir) == sorted([web.container_id, brief.container_id])
        assert metric(address, "multihome_pending_status_writes") == 2
        world.delete(brief)  # right after its ADD: its late status must never land
        assert statuswrites.pending_ids(cache_dir) == [web.container_id]

        api.set_tokens("t0k3n")
        wait_for("the daemon to write the status", lambda: annotation(api, web) is not None)

        status = json.loads(annotation(api, web) or "[]")
        assert [s["interface"] for s in status] == ["eth0"]
        wait_for("the pending file to go", lambda: not statuswrites.pending_ids(cache_dir))
        assert metric(address, "multihome_pending_status_writes") == 0
        assert annotation(api, brief) is None
        world.delete(web)
        for pod in (web, brief):
            leaks.assert_clean(world.leftovers(pod, before))


def test_daemon_writes_a_pending_manifest_status_once_it_can(lab: Lab) -> None:
    if not shim_binary().exists():
        pytest.skip("the shim is not built: make -C shim")
    with ExitStack() as stack:
        daemon = stack.enter_context(DaemonProcess())
        world = World(lab, mode="shim", socket_dir=daemon.socket_dir)
        before = leaks.baseline(lab)
        pod = world.pod("web")
        blocker = world.manifests / "status"
        blocker.write_text("not a directory")

        world.add(pod)

        cache_dir = world.cni_dir / "multihome"
        assert statuswrites.pending_ids(cache_dir) == [pod.container_id]
        blocker.unlink()
        wait_for("the daemon to write the status", lambda: world.network_status(pod) is not None)
        wait_for("the pending file to go", lambda: not statuswrites.pending_ids(cache_dir))
        world.delete(pod)
        leaks.assert_clean(world.leftovers(pod, before))
