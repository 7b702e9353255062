"""Engine rules that need no namespace: fake plugins, a manifest directory, a tmp cache."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from multihome.cni.errors import CNIError, Code
from multihome.cni.fakeexec import Call, FakeExec
from multihome.cni.request import Request
from multihome.engine.cache import AttachmentCache
from multihome.engine.engine import Engine
from multihome.testing.fakeconfig import multus_config, request


def _world(tmp_path: Path, networks: str, *, parallel: bool = False) -> dict[str, Any]:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    pod = {
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "u1",
            "annotations": {"k8s.v1.cni.cncf.io/networks": networks},
        },
    }
    (manifests / "pod.json").write_text(json.dumps(pod))
    for name in ("a", "b", "c"):
        nad = {
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"config": json.dumps({"cniVersion": "1.0.0", "type": f"plugin-{name}"})},
        }
        (manifests / f"nad-{name}.json").write_text(json.dumps(nad))
    return multus_config(tmp_path, manifestDir=str(manifests), parallelDelegates=parallel)


def _added(call: Call) -> dict[str, Any] | None:
    if call.command != "ADD":
        return None
    ifname = call.env["CNI_IFNAME"]
    return {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": ifname, "sandbox": call.env["CNI_NETNS"]}],
    }


def _fails(code: int, message: str) -> Any:
    def behaviour(call: Call) -> None:
        if call.command == "ADD":
            raise CNIError(code, message)

    return behaviour


def test_rollback_deletes_started_delegates_in_reverse_order(tmp_path: Path) -> None:
    config = _world(tmp_path, "a,b,c")
    fake = FakeExec({"cluster-plugin": None, "plugin-a": None, "plugin-c": None})
    fake.register("plugin-b", _fails(7, "master link missing"))
    engine = Engine(executor=fake)

    with pytest.raises(CNIError) as err:
        asyncio.run(engine.handle(request("ADD", config)))

    assert err.value.code == 7
    assert "default/b" in err.value.msg and "net2" in err.value.msg
    assert "master link missing" in err.value.msg
    assert fake.commands() == [
        ("cluster-plugin", "ADD"),
        ("plugin-a", "ADD"),
        ("plugin-b", "ADD"),
        ("plugin-b", "DEL"),  # a half-done ADD is deleted too
        ("plugin-a", "DEL"),
        ("cluster-plugin", "DEL"),
    ]  # plugin-c never started, so it is not deleted
    assert AttachmentCache(tmp_path / "cni" / "multihome").container_ids() == []


def test_parallel_delegates_respect_the_bound(tmp_path: Path) -> None:
    config = {**_world(tmp_path, "a,b,c", parallel=True), "maxParallelDelegates": 2}
    running = 0
    peak = 0
    release = asyncio.Event()

    async def slow(call: Call) -> dict[str, Any] | None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if peak == 2:
            release.set()
        await release.wait()
        running -= 1
        return _added(call)

    fake = FakeExec({"cluster-plugin": None})
    for name in "abc":
        fake.register(f"plugin-{name}", slow)

    async def add() -> None:
        await Engine(executor=fake).add(request("ADD", config), _config(config))

    asyncio.run(add())
    assert peak == 2


def _config(config: dict[str, Any]) -> Any:
    from multihome.networks.config import MultusConfig

    return MultusConfig.parse(json.dumps(config))


def test_del_keeps_what_a_retry_can_fix_and_drops_the_rest(tmp_path: Path) -> None:
    config = _world(tmp_path, "a,b")
    fake = FakeExec({"cluster-plugin": None})

    def flaky(call: Call) -> dict[str, Any] | None:
        if call.command == "DEL":
            raise CNIError(Code.TRY_AGAIN_LATER, "datastore busy")
        return _added(call)

    fake.register("plugin-a", flaky)
    fake.register("plugin-b", None)
    engine = Engine(executor=fake)
    asyncio.run(engine.handle(request("ADD", config)))

    with pytest.raises(CNIError) as err:
        asyncio.run(engine.handle(request("DEL", config)))
    assert err.value.code == Code.TRY_AGAIN_LATER
    cache = AttachmentCache(tmp_path / "cni" / "multihome")
    record = cache.load("c1")
    assert record is not None
    assert [a.network for a in record.attachments] == ["default/a"]

    fake.register("plugin-a", None)  # the datastore is back
    asyncio.run(engine.handle(request("DEL", config)))
    assert cache.container_ids() == []


def test_del_drops_errors_a_retry_cannot_fix(tmp_path: Path) -> None:
    config = _world(tmp_path, "a")
    fake = FakeExec({"cluster-plugin": None})

    def broken(call: Call) -> dict[str, Any] | None:
        if call.command == "DEL":
            raise CNIError(Code.INVALID_NETWORK_CONFIG, "bad config")
        return _added(call)

    fake.register("plugin-a", broken)
    engine = Engine(executor=fake)
    asyncio.run(engine.handle(request("ADD", config)))
    asyncio.run(engine.handle(request("DEL", config)))
    assert AttachmentCache(tmp_path / "cni" / "multihome").container_ids() == []


def test_add_for_a_pod_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    config = _world(tmp_path, "a")
    (tmp_path / "manifests" / "pod.json").unlink()
    fake = FakeExec({"cluster-plugin": None})
    with pytest.raises(CNIError) as err:
        asyncio.run(Engine(executor=fake).handle(request("ADD", config)))
    assert err.value.code == Code.CONTAINER_UNKNOWN
    assert "default/web" in err.value.msg
    assert fake.commands() == []


def test_gc_needs_the_valid_attachments(tmp_path: Path) -> None:
    config = {**_world(tmp_path, "a"), "cniVersion": "1.1.0"}
    env = {"CNI_COMMAND": "GC", "CNI_PATH": "/opt/cni/bin"}
    with pytest.raises(CNIError) as err:
        asyncio.run(
            Engine(executor=FakeExec()).handle(Request.from_env(env, json.dumps(config).encode()))
        )
    assert "cni.dev/valid-attachments" in err.value.msg


def test_version_lists_every_spec_version() -> None:
    out = asyncio.run(
        Engine(executor=FakeExec()).handle(Request.from_env({"CNI_COMMAND": "VERSION"}))
    )
    assert json.loads(out)["supportedVersions"][-1] == "1.1.0"


def test_an_add_left_by_a_crash_is_undone_before_the_retry(tmp_path: Path) -> None:
    config = _world(tmp_path, "a")
    fake = FakeExec({"cluster-plugin": None, "plugin-a": None})
    engine = Engine(executor=fake)
    asyncio.run(engine.handle(request("ADD", config)))
    fake.calls.clear()

    asyncio.run(engine.handle(request("ADD", config)))

    assert fake.commands() == [
        ("plugin-a", "DEL"),
        ("cluster-plugin", "DEL"),
        ("cluster-plugin", "ADD"),
        ("plugin-a", "ADD"),
    ]


@pytest.mark.parametrize(("per_interface", "expected"), [(False, 1), (True, 3)])
def test_added_interface_events_per_add_or_per_interface(
    tmp_path: Path, per_interface: bool, expected: int
) -> None:
    config = _world(tmp_path, "a,b")
    fake = FakeExec({"cluster-plugin": _added, "plugin-a": _added, "plugin-b": _added})
    engine = Engine(executor=fake, event_per_interface=per_interface)
    asyncio.run(engine.handle(request("ADD", config)))
    lines = (tmp_path / "manifests" / "events.jsonl").read_text().splitlines()
    messages = [json.loads(line)["message"] for line in lines]
    assert len(messages) == expected
    assert "Add net2 [] from default/b" in messages[-1]


def test_a_plugin_that_hangs_on_version_is_run_anyway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import multihome.engine.probing as probing

    monkeypatch.setattr(probing, "PROBE_TIMEOUT", 0.05)
    config = _world(tmp_path, "a")
    fake = FakeExec({"cluster-plugin": _added, "plugin-a": _added})

    class HangsOnVersion:
        def find(self, plugin_type: str, paths: Any) -> str:
            return fake.find(plugin_type, paths)

        async def run(self, path: str, *, stdin: bytes, env: Any) -> Any:
            if env.get("CNI_COMMAND") == "VERSION" and path.endswith("/plugin-a"):
                await asyncio.Event().wait()  # never answers: the probe's bound ends it
            return await fake.run(path, stdin=stdin, env=env)

    caplog.set_level("INFO", logger="multihome.engine.engine")
    asyncio.run(Engine(executor=HangsOnVersion()).handle(request("ADD", config)))

    assert ("plugin-a", "ADD") in fake.commands()
    assert "'plugin-a' of network 'default/a' did not answer VERSION" in caplog.text


def test_a_thin_del_releases_even_when_its_kubeconfig_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its Kubernetes client is made beside the delegates' DELs, for the status clear."""
    from multihome.cluster.deferred import DeferredSource

    order: list[str] = []
    make = DeferredSource._source

    def made(self: DeferredSource) -> Any:
        order.append("client")
        return make(self)

    def plugin(call: Call) -> None:
        order.append(f"plugin {call.command}")

    monkeypatch.setattr(DeferredSource, "_source", made)
    config = multus_config(tmp_path, kubeconfig=str(tmp_path / "missing-kubeconfig"))
    engine = Engine(executor=FakeExec({"cluster-plugin": plugin}))
    assert asyncio.run(engine.handle(request("DEL", config))) == ""
    assert order == ["plugin DEL", "client"]  # started first; the client failed, logged
    with pytest.raises(CNIError) as failed:  # an ADD needs it before anything runs
        asyncio.run(engine.handle(request("ADD", config)))
    assert failed.value.code == Code.IO_FAILURE and "missing-kubeconfig" in failed.value.msg
    assert order == ["plugin DEL", "client"]
