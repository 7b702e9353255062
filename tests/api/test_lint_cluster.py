"""`multihome lint --cluster` and `explain --cluster` against the API double: paged lists only."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from multihome.cli import cli
from multihome.doctor.cluster import load
from multihome.testing.apiserver import run_in_thread

NAD_RESOURCE = "network-attachment-definitions"


def nad(name: str, namespace: str = "default", type_: str = "bridge") -> dict:
    config = {"cniVersion": "1.0.0", "name": name, "type": type_}
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"config": json.dumps(config)},
    }


def pod(name: str, networks: str, namespace: str = "default") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {"k8s.v1.cni.cncf.io/networks": networks},
        },
        "spec": {"containers": [{"name": "c", "image": "pause"}]},
    }


def test_lint_reads_the_cluster_with_paged_lists_and_no_get(tmp_path: Path) -> None:
    with run_in_thread(tokens=["t"]) as api:
        for index in range(5):
            api.create(nad(f"net-{index}"))
        api.create(nad("evil", type_="../sh"))
        api.create(pod("web", "net-0,net-1"))
        api.create(pod("db", "missing"))
        api.create(pod("other", "net-0", namespace="team"))
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")

        objects = asyncio.run(load(kubeconfig=str(kubeconfig), page_size=2))
        assert len(objects) == 9
        assert api.count("list", NAD_RESOURCE) == 3  # 6 NADs, 2 a page
        assert api.count("list", "pods") == 2
        assert api.count("get") == 0
        api.reset_requests()

        result = CliRunner().invoke(
            cli, ["lint", "--no-node", "--cluster", "--kubeconfig", str(kubeconfig), "-o", "json"]
        )
        report = json.loads(result.output)
        assert result.exit_code == 1
        assert api.count() == 2  # one page each
        found = {
            f"{o['kind']} {o['namespace']}/{o['name']}": [f["code"] for f in o["findings"]]
            for o in report["objects"]
        }
        assert found["NetworkAttachmentDefinition default/evil"] == ["plugin-type-invalid"]
        assert found["Pod default/web"] == []
        assert found["Pod default/db"] == ["nad-not-found"]
        assert found["Pod team/other"] == ["nad-not-found"]  # net-0 is in default

        api.reset_requests()
        result = CliRunner().invoke(
            cli, ["lint", "--no-node", "--cluster", "--kubeconfig", str(kubeconfig), "-n", "team"]
        )
        assert api.count("list") == 2 and api.count() == 2
        assert "Pod team/other" in result.output and "default/db" not in result.output

        result = CliRunner().invoke(
            cli, ["explain", "default/web", "--cluster", "--kubeconfig", str(kubeconfig)]
        )
        assert result.exit_code == 0, result.output
        assert "net1: default/net-0" in result.output
        assert "net2: default/net-1" in result.output
        assert "step 1: net1, net2 in parallel (at most 2 at once)" in result.output


def test_an_unreachable_cluster_is_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("not: [a kubeconfig")
    result = CliRunner().invoke(cli, ["lint", "--cluster", "--kubeconfig", str(kubeconfig)])
    assert result.exit_code == 2
    assert result.output.startswith("cluster: error[input-unreadable] ")
    assert "Traceback" not in result.output
