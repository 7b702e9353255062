"""`multihome lint` on the corpus under tests/fixtures/lint: findings, output, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from multihome.cli import cli
from multihome.networks.findings import RULES

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "lint"
CORPUS = FIXTURES / "corpus"
IOT = FIXTURES / "iot"
BROKEN = FIXTURES / "broken"
#: Codes lint cannot emit: they come from what plugins did (after ADD), from
#: the webhook's cold cache, from a device plugin's assignment (the kubelet's,
#: at ADD), or from a node (tests/netns/test_lint_node.py); and those that need
#: a multus configuration of their own (`test_the_multus_configuration_s_codes`).
NOT_FROM_CORPUS = {
    "device-id-ignored",
    "conf-file-invalid",
    "network-not-found",
    "aux-chain-invalid",
    "config-key-ignored",
    "mac-not-applied",
    "ip-not-applied",
    "request-unverifiable",
    "nad-cache-cold",
    "plugin-not-found",
    "plugin-not-executable",
    "device-missing",
    "selection-too-many",
    "plugin-version-unsupported",
    "plugin-version-unknown",
    "master-not-found",
    "master-down",
    "primary-config",
    "primary-config-not-found",
}
#: The codes this issue added; the corpus must produce each one.
AHEAD_OF_TIME = {
    "ip-outside-subnet",
    "address-outside-subnet",
    "gateway-outside-subnet",
    "route-invalid",
    "route-shadows-subnet",
    "route-shadows-cluster",
    "route-default-conflict",
    "range-overlap",
    "ip-claimed-twice",
    "config-invalid",
}


def lint(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["lint", "--no-node", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def lint_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, out = lint("-o", "json", *args)
    return code, json.loads(out)


def codes_of(report: dict[str, Any], title: str) -> set[str]:
    for obj in report["objects"]:
        kind = obj["workload"] or obj["kind"]
        if f"{kind} {obj['namespace']}/{obj['name']}" == title:
            return {f["code"] for f in obj["findings"]}
    raise AssertionError(f"no object {title}")


def test_the_iot_vlan_story_names_the_multicast_mac_and_the_off_subnet_gateway() -> None:
    code, out = lint(str(IOT))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{IOT / 'iot-vlan.yaml'}:30: Pod iot/sensor-gateway"
    assert lines[1].startswith("  error[mac-multicast] networks[0].mac: MAC 'f1:fd:59:0b:bd:2b'")
    assert (
        lines[2] == "      hint: use a locally administered unicast MAC such as 02:fd:59:0b:bd:2b"
    )
    assert "error[gateway-outside-subnet] nad[iot/iot-vlan].spec.config.plugins[0].ipam" in out
    assert lines[-1] == "2 errors, 0 warnings, 0 info in 2 objects"


def test_no_colour_off_a_terminal() -> None:
    _, out = lint(str(IOT))
    assert "\x1b[" not in out


def test_the_corpus_gives_every_code_lint_can_find_without_a_node() -> None:
    code, report = lint_json("--cluster-cidr", "10.96.0.0/12", str(CORPUS), str(IOT))
    assert code == 1
    found = {f["code"] for obj in report["objects"] for f in obj["findings"]}
    assert found >= AHEAD_OF_TIME
    assert found == set(RULES) - NOT_FROM_CORPUS


def test_findings_land_on_the_object_they_concern() -> None:
    _, report = lint_json("--cluster-cidr", "10.96.0.0/12", str(CORPUS))
    assert codes_of(report, "NetworkAttachmentDefinition shop/lan-a") == {
        "address-outside-subnet",
        "gateway-outside-subnet",
        "route-invalid",
        "route-shadows-cluster",
        "route-shadows-subnet",
    }
    assert codes_of(report, "NetworkAttachmentDefinition shop/lan-b") == {"range-overlap"}
    assert codes_of(report, "NetworkAttachmentDefinition kube-system/default-net") == set()
    assert codes_of(report, "Pod shop/till-1") == {"capability-missing"}
    assert "ip-claimed-twice" in codes_of(report, "Pod shop/till-2")
    assert "ip-outside-subnet" in codes_of(report, "Pod shop/till-2")
    assert "route-default-conflict" in codes_of(report, "Pod shop/router")
    assert "ip-claimed-twice" in codes_of(report, "Deployment shop/scanners")
    assert "ip-claimed-twice" in codes_of(report, "DaemonSet shop/agent")
    assert codes_of(report, "StatefulSet shop/db") == set()
    assert codes_of(report, "CronJob shop/nightly") == {"nad-not-found"}
    assert codes_of(report, "Job shop/job") == {"selection-json-invalid"}


def test_json_schema_and_where_each_object_came_from() -> None:
    _, report = lint_json(str(CORPUS))
    assert report["schema"] == "multihome.lint/v1"
    assert set(report) == {"schema", "objects", "inputErrors", "summary", "exitCode"}
    lines = {(o["kind"], o["name"]): (Path(o["file"]).name, o["line"]) for o in report["objects"]}
    assert lines[("NetworkAttachmentDefinition", "lan-a")] == ("nads.yaml", 2)
    assert lines[("NetworkAttachmentDefinition", "lan-b")] == ("nads.yaml", 16)
    assert lines[("Pod", "router")] == ("pods.yaml", 19)
    assert lines[("Pod", "nightly")] == ("workloads.yaml", 56)
    assert lines[("NetworkAttachmentDefinition", "dual")] == ("list.json", 1)
    assert lines[("MultusConfig", "multus-cni-network")] == ("00-multus.conf", 1)
    finding = report["objects"][0]["findings"][0]
    assert set(finding) == {"code", "severity", "path", "message", "hint"}
    summary = report["summary"]
    assert summary["objects"] == len(report["objects"]) == 37
    assert summary["errors"] == sum(
        f["severity"] == "error" for o in report["objects"] for f in o["findings"]
    )
    assert report["exitCode"] == 1


def test_the_multus_configuration_s_codes(tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-broken.conf").write_text('{"cniVersion": ')
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "00-multus.conf").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "multus-cni-network",
                "type": "multus",
                "confDir": str(conf_dir),
                "clusterNetwork": "k8s-pod-network",
                "auxiliaryCNIChainName": "aux",
                "cniConf": "/etc/cni/net.d/00-multus.conf",
            }
        )
    )
    (inputs / "pod.yaml").write_text("kind: Pod\nmetadata: {name: p, namespace: default}\n")
    code, report = lint_json(str(inputs))
    assert code == 1
    found = {
        obj["kind"]: [(f["code"], f["path"]) for f in obj["findings"]] for obj in report["objects"]
    }
    assert found["MultusConfig"] == [("config-key-ignored", "cniConf")]
    assert found["Pod"] == [  # errors first
        ("network-not-found", "clusterNetwork"),
        ("aux-chain-invalid", "auxiliaryCNIChainName"),
        ("conf-file-invalid", "clusterNetwork"),
    ]


def test_yaml_list_items_keep_their_own_lines(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text(
        "kind: List\nitems:\n"
        "- kind: NetworkAttachmentDefinition\n  metadata: {name: a}\n"
        '  spec: {config: \'{"cniVersion": "1.0.0", "type": "bridge"}\'}\n'
        "- kind: Pod\n  metadata: {name: p, annotations: {k8s.v1.cni.cncf.io/networks: a}}\n"
    )
    code, report = lint_json(str(tmp_path))
    assert code == 0
    assert [(o["kind"], o["line"]) for o in report["objects"]] == [
        ("NetworkAttachmentDefinition", 3),
        ("Pod", 6),
    ]


def test_broken_yaml_is_a_clear_error_with_file_and_line_and_exit_2() -> None:
    code, out = lint(str(BROKEN))
    assert code == 2
    assert out.splitlines()[0] == (
        f"{BROKEN / 'pod.yaml'}:6:5: error[input-unreadable] not valid YAML: "
        "did not find expected ',' or ']'"
    )
    assert "Traceback" not in out


def test_unreadable_input_wins_over_findings_and_is_in_json(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"kind": "Pod",\n  "metadata": }')
    code, report = lint_json(str(tmp_path), str(IOT), str(tmp_path / "missing.yaml"))
    assert code == 2
    errors = {Path(e["file"]).name: e for e in report["inputErrors"]}
    assert errors["bad.json"]["line"] == 2
    assert errors["bad.json"]["message"].startswith("not valid JSON: Expecting value")
    assert errors["missing.yaml"]["message"] == "no such file or directory"
    assert report["summary"]["errors"] == 2  # the readable files were still linted


def test_strict_fails_on_warnings(tmp_path: Path) -> None:
    (tmp_path / "nad.yaml").write_text(
        "kind: NetworkAttachmentDefinition\nmetadata: {name: n}\n"
        "spec: {config: {cniVersion: '1.0.0', type: bridge}}\n"
    )
    assert lint(str(tmp_path))[0] == 0
    code, out = lint("--strict", str(tmp_path))
    assert code == 1
    assert "warning[nad-config-not-string]" in out


def test_namespace_filter_and_nothing_to_lint(tmp_path: Path) -> None:
    _, report = lint_json("-n", "iot", str(IOT), str(CORPUS))
    names = {(o["kind"], o["namespace"]) for o in report["objects"]}
    assert ("Pod", "iot") in names and all(ns in ("iot", "") for _, ns in names)
    code, out = lint()
    assert code == 2 and "give files or directories, or --cluster" in out


def test_a_bad_cluster_cidr_is_a_usage_error() -> None:
    code, out = lint("--cluster-cidr", "ten/8", str(IOT))
    assert code == 2
    assert "'ten/8' is not a subnet" in out


def test_the_readme_shows_real_lint_output() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    command = "$ multihome lint --no-node tests/fixtures/lint/iot\n"
    shown = readme.split(command, 1)[1].split("```", 1)[0]
    result = CliRunner().invoke(cli, ["lint", "--no-node", str(IOT)])
    assert shown == result.output.replace(str(IOT), "tests/fixtures/lint/iot")


def test_docs_lint_md_shows_the_schema_lint_writes() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "lint.md").read_text()
    example = json.loads(doc.split("```json\n", 1)[1].split("```", 1)[0])
    _, report = lint_json(str(CORPUS))
    assert set(example) == set(report)
    assert example["schema"] == report["schema"]
    assert set(example["objects"][0]) == set(report["objects"][0])
    assert set(example["objects"][0]["findings"][0]) == set(report["objects"][0]["findings"][0])
    assert set(example["inputErrors"][0]) == {"file", "line", "column", "message"}
    assert set(example["summary"]) == set(report["summary"])
