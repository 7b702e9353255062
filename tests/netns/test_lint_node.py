"""`multihome lint --node` against this machine: real plugin binaries, real links."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from multihome.cli import cli
from multihome.testing.lab import CNI_BIN_DIR, Lab

pytestmark = pytest.mark.netns


def nad(name: str, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"config": json.dumps({"cniVersion": "1.0.0", "name": name, **config})},
    }


def lint(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["lint", "-o", "json", *args])
    return result.exit_code, json.loads(result.output)


def findings_by_object(report: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    return {o["name"]: [(f["code"], f["path"]) for f in o["findings"]] for o in report["objects"]}


def test_binaries_versions_links_and_the_primary_config(lab: Lab) -> None:
    up = lab.macvlan_parent("up")
    down = lab.macvlan_parent("down")
    lab.run(None, "ip", "link", "set", down, "down")
    tmp = lab.tmpdir()
    extra_bin = tmp / "bin"
    extra_bin.mkdir()
    old = extra_bin / "old-plugin"
    old.write_text(
        '#!/bin/sh\necho \'{"cniVersion": "0.3.1", "supportedVersions": ["0.3.0", "0.3.1"]}\'\n'
    )
    os.chmod(old, 0o755)
    conf_dir = tmp / "net.d"
    conf_dir.mkdir()
    (conf_dir / "00-multus.conf").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus"})
    )
    (conf_dir / "10-podnet.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "podnet",
                "plugins": [{"type": "ptp"}, {"type": "flannel"}],
            }
        )
    )
    manifests = tmp / "nads.json"
    manifests.write_text(
        json.dumps(
            {
                "kind": "List",
                "items": [
                    nad(
                        "lan-up",
                        {
                            "type": "macvlan",
                            "master": up,
                            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.9.0.0/24"}]]},
                        },
                    ),
                    nad("lan-down", {"type": "macvlan", "master": down}),
                    nad("lan-gone", {"type": "ipvlan", "master": "mh-no-such-link"}),
                    nad("dev", {"type": "host-device", "device": "mh-no-such-dev"}),
                    nad("missing", {"type": "nosuch-plugin", "ipam": {"type": "nosuch-ipam"}}),
                    nad("old", {"type": "old-plugin"}),
                ],
            }
        )
    )
    code, report = lint(
        "--node",
        "--bin-dir", CNI_BIN_DIR,
        "--bin-dir", str(extra_bin),
        "--conf-dir", str(conf_dir),
        str(manifests),
    )  # fmt: skip
    assert code == 1
    found = findings_by_object(report)
    base = "nad[default/{}].spec.config"
    assert found["lan-up"] == []
    assert found["lan-down"] == [("master-down", base.format("lan-down") + ".master")]
    assert found["lan-gone"] == [("master-not-found", base.format("lan-gone") + ".master")]
    assert found["dev"] == [("master-not-found", base.format("dev") + ".device")]
    assert found["missing"] == [
        ("plugin-not-found", base.format("missing") + ".type"),
        ("plugin-not-found", base.format("missing") + ".ipam.type"),
    ]
    assert found["old"] == [("plugin-version-unsupported", base.format("old") + ".type")]
    [message] = [
        f["message"] for o in report["objects"] for f in o["findings"] if o["name"] == "old"
    ]
    # The ADD's own wording (one probe, `multihome.engine.probing`).
    assert message.endswith(f"({old}) supports CNI versions 0.3.0, 0.3.1, not the network's 1.0.0")
    # The node: the first configuration that is not multus' own, and its binaries.
    assert found["(this node)"] == [
        ("plugin-not-found", "clusterNetwork.plugins[1].type"),  # flannel is not installed
        ("primary-config", "clusterNetwork"),
    ]
    node = next(o for o in report["objects"] if o["kind"] == "Node")
    primary = node["findings"][1]
    assert primary["message"] == (
        f"the cluster network is {conf_dir}/10-podnet.conflist (network 'podnet', ptp, flannel)"
    )


def test_a_node_without_a_primary_config(lab: Lab) -> None:
    conf_dir = lab.tmpdir() / "empty.d"
    conf_dir.mkdir()
    empty = Path(conf_dir) / "nads.yaml"
    empty.write_text("")
    code, report = lint("--node", "--bin-dir", CNI_BIN_DIR, "--conf-dir", str(conf_dir), str(empty))
    assert code == 1
    assert findings_by_object(report)["(this node)"] == [
        ("primary-config-not-found", "clusterNetwork")
    ]
