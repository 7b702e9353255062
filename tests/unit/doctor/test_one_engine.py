"""One engine: the same bad NAD gives the same finding from lint, the webhook and an ADD;
explain shows each plugin exactly the stdin and environment the ADD gives it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from multihome.cli import cli
from multihome.cni.errors import CNIError
from multihome.cni.fakeexec import Call, FakeExec
from multihome.cni.request import Request
from multihome.doctor.webhook import Validator
from multihome.engine.engine import Engine
from multihome.testing import fakeconfig

IOT = Path(__file__).resolve().parents[2] / "fixtures" / "lint" / "iot" / "iot-vlan.yaml"
BAD_NAD = {
    "apiVersion": "k8s.cni.cncf.io/v1",
    "kind": "NetworkAttachmentDefinition",
    "metadata": {"name": "lan", "namespace": "default"},
    "spec": {"config": json.dumps({"cniVersion": "1.0.0", "type": "../../bin/sh"})},
}


def pod(networks: str, name: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": "u1",
            "annotations": {"k8s.v1.cni.cncf.io/networks": networks},
        },
        "spec": {"containers": [{"name": "c", "image": "pause"}]},
    }


def multus_config(tmp_path: Path, manifests: Path) -> dict[str, Any]:
    return fakeconfig.multus_config(
        tmp_path, binDir="/opt/cni/bin", manifestDir=str(manifests), parallelDelegates=True
    )


def add_request(config: dict[str, Any], name: str = "web") -> Request:
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/run/netns/none",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={name};K8S_POD_UID=u1",
    }
    return Request.from_env(env, json.dumps(config).encode())


def test_the_same_bad_nad_gives_the_same_finding_in_lint_webhook_and_add(
    tmp_path: Path,
) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "all.yaml").write_text(yaml.safe_dump_all([BAD_NAD, pod("lan")]))

    # lint
    result = CliRunner().invoke(cli, ["lint", "--no-node", "-o", "json", str(manifests)])
    report = json.loads(result.output)
    linted = [f for o in report["objects"] if o["kind"] == "Pod" for f in o["findings"]]
    [from_lint] = [f for f in linted if f["code"] == "plugin-type-invalid"]
    nad_findings = [f for o in report["objects"] if o["kind"] != "Pod" for f in o["findings"]]
    assert nad_findings == [from_lint]  # the NAD's own finding, and the pod's through it

    # the webhook, for the NAD and for the pod
    validator = Validator()
    nad_review = {"kind": {"kind": "NetworkAttachmentDefinition"}, "operation": "CREATE"}
    allowed, errors, _ = validator.review({**nad_review, "object": BAD_NAD})
    assert not allowed
    assert [e.to_dict() for e in errors] == [from_lint]

    # an ADD, through the engine, with fake plugins: it stops before any plugin runs
    fake = FakeExec({"cluster-plugin": None})
    with pytest.raises(CNIError) as err:
        asyncio.run(Engine(executor=fake).handle(add_request(multus_config(tmp_path, manifests))))
    assert f"{from_lint['path']}: {from_lint['message']}" in err.value.msg
    assert err.value.details == from_lint["hint"]
    assert fake.commands() == []


def test_explain_shows_what_the_add_gives_each_plugin(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all(IOT.read_text()))
    nad = docs[0]
    good = pod('[{"name": "iot-vlan", "ips": ["10.30.1.20/24"], "mac": "02:fd:59:0b:bd:2b"}]')
    good["metadata"]["namespace"] = nad["metadata"]["namespace"] = "default"
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "all.yaml").write_text(yaml.safe_dump_all([nad, good]))
    config = multus_config(tmp_path, manifests)
    config["binDir"] = str(tmp_path / "bin")
    (tmp_path / "bin").mkdir()
    for plugin in ("cluster-plugin", "macvlan", "tuning"):
        (tmp_path / "bin" / plugin).write_text("#!/bin/sh\nexit 1\n")
    (manifests / "00-multus.conf").write_text(json.dumps({**config, "manifestDir": ""}))

    result = CliRunner().invoke(
        cli,
        [
            "explain",
            "default/web",
            "-f",
            str(manifests),
            "--cni-path",
            "/opt/cni/bin",
            "-o",
            "json",
        ],
    )
    plan = json.loads(result.output)
    # The ADD would run; the off-subnet route gateway is found only ahead of time.
    assert plan["wouldRun"] and plan["findings"] == []
    assert [f["code"] for f in plan["aheadOfTime"]] == ["gateway-outside-subnet"]
    assert result.exit_code == 1

    def macvlan(call: Call) -> dict[str, Any]:
        interface = {"name": "net1", "mac": "02:fd:59:0b:bd:2b", "sandbox": "/run/netns/none"}
        ips = [{"address": "10.30.1.20/24", "interface": 0}]
        return {"cniVersion": "1.0.0", "interfaces": [interface], "ips": ips}

    fake = FakeExec({"cluster-plugin": None, "macvlan": macvlan, "tuning": None, "static": None})
    # The plugins run; their result states the MAC and the address in the
    # sandbox, so the engine does not look into the (here missing) namespace.
    asyncio.run(Engine(executor=fake).handle(add_request(config)))
    ran = [c for c in fake.calls if c.command == "ADD"]

    explained = [(a["env"], p) for a in plan["attachments"] for p in a["plugins"]]
    assert [p["type"] for _, p in explained] == [c.plugin for c in ran]
    for (env, plugin), call in zip(explained, ran, strict=True):
        assert plugin["binary"] == call.path
        for key in ("CNI_IFNAME", "CNI_ARGS", "CNI_PATH", "CNI_COMMAND"):
            if key == "CNI_ARGS":  # the real ADD has the runtime's container ID
                assert env[key] == call.env[key].replace("c1", "<container-id>")
            else:
                assert env[key] == call.env[key]
        stdin = json.loads(plugin["stdin"])
        real = call.conf
        if "prevResult" in real:
            assert stdin.pop("prevResult") == "<the result of plugin 1 (macvlan)>"
            real.pop("prevResult")
        assert stdin == real
    assert plan["steps"] == [
        {"attachments": [0], "parallel": False, "limit": 0},
        {"attachments": [1], "parallel": False, "limit": 0},
    ]
    tuning = json.loads(plan["attachments"][1]["plugins"][1]["stdin"])
    assert tuning["runtimeConfig"] == {"mac": "02:fd:59:0b:bd:2b", "ips": ["10.30.1.20/24"]}
