"""deploy/kubernetes: every manifest is valid Kubernetes and says what the daemon does.

Validated offline with kubernetes-validate (the OpenAPI schemas of each
Kubernetes release, packaged) against the supported range, strictly: an
unknown field is an error.  Custom resources of other projects
(ServiceMonitor, PrometheusRule, cert-manager) have no schema there; their
PromQL is checked against the metrics the daemon exports instead.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from multihome.cluster.kube import KubeConfig
from multihome.daemon.config import DaemonConfig
from multihome.daemon.metrics import Metrics
from multihome.testing.apiserver.roles import MULTIHOME

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy" / "kubernetes"
#: The Kubernetes releases supported (docs/install.md says the same).
VERSIONS = ("1.28.0", "1.31.0", "1.34.0", "1.37.0")
#: Kinds whose schema is not Kubernetes' own.
FOREIGN = {"ServiceMonitor", "PrometheusRule", "Certificate", "Issuer"}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or path.parent.parent.name == "overlays":
            continue  # kustomize's own files; the overlays' are patches
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((f"{path.relative_to(DEPLOY)}:{doc['kind']}", doc))
    return out


DOCS = _documents()


def _one(kind: str, name: str = "") -> dict[str, Any]:
    [doc] = [d for _, d in DOCS if d["kind"] == kind and name in ("", d["metadata"]["name"])]
    return doc


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates(version: str) -> None:
    checked = 0
    for where, doc in DOCS:
        if doc["kind"] in FOREIGN:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{where} is not valid Kubernetes {version}: {err.message} at {err.path}")
        checked += 1
    assert checked >= 10


KUSTOMIZATIONS = sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its kustomize) is absent")
@pytest.mark.parametrize("where", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_each_kustomization_builds_and_validates(where: Path) -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(where)], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert docs
    for doc in docs:
        if doc["kind"] not in FOREIGN:
            for version in (VERSIONS[0], VERSIONS[-1]):
                kubernetes_validate.validate(doc, version, strict=True)


def test_kustomizations_name_files_that_exist() -> None:
    for path in DEPLOY.rglob("kustomization.yaml"):
        spec = yaml.safe_load(path.read_text())
        named = list(spec.get("resources", []))
        named += [p["path"] for p in spec.get("patches", [])]
        for generator in spec.get("configMapGenerator", []):
            named += [f.split("=")[-1] for f in generator.get("files", [])]
        for name in named:
            assert (path.parent / name).exists(), f"{path}: {name}"
    default = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    # Optional components need other projects' CRDs: never in the default install.
    assert default["resources"] == ["base"]


def test_overlays_patch_what_exists() -> None:
    daemonset = _one("DaemonSet")["spec"]["template"]["spec"]
    patch = yaml.safe_load((DEPLOY / "overlays/thin/daemonset-thin.yaml").read_text())
    thin_map = yaml.safe_load((DEPLOY / "overlays/thin/configmap-thin.yaml").read_text())["data"]
    for key in ("initContainers", "containers"):
        names = {c["name"] for c in daemonset[key]}
        assert {c["name"] for c in patch["spec"]["template"]["spec"][key]} <= names
    k3s = yaml.safe_load((DEPLOY / "overlays/k3s/daemonset-k3s.yaml").read_text())
    volumes = {v["name"] for v in daemonset["volumes"]}
    assert {v["name"] for v in k3s["spec"]["template"]["spec"]["volumes"]} <= volumes
    thin = json.loads(thin_map["thin-conf.json"])
    assert thin["type"] == "multihome-cni"
    config = DaemonConfig.parse(thin_map["daemon-config.json"], environ={})
    assert config.multus_config_file == "/etc/multihome/thin-conf.json"


def test_nad_schema_accepts_nads_and_refuses_what_is_not_a_cni_config() -> None:
    crd = _one("CustomResourceDefinition")
    [version] = crd["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    nad = json.loads((ROOT / "tests/fixtures/networks/iot-vlan.nad.json").read_text())
    jsonschema.validate(nad, schema)
    jsonschema.validate({**nad, "spec": {}}, schema)  # config from the node's confDir
    jsonschema.validate({**nad, "spec": {"config": ""}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**nad, "spec": {"config": "type: macvlan\n"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**nad, "spec": {"config": 7}}, schema)


def _config() -> DaemonConfig:
    text = _one("ConfigMap", "multihome-daemon-config")["data"]["daemon-config.json"]
    return DaemonConfig.parse(text, environ={})


def test_daemonset_fits_the_daemon() -> None:
    config = _config()
    pod = _one("DaemonSet")["spec"]["template"]["spec"]
    [daemon] = pod["containers"]
    [init] = pod["initContainers"]
    # The grace period covers the drain and the event flush (daemon/config.py, kube.py).
    assert pod["terminationGracePeriodSeconds"] >= (
        config.shutdown_timeout + KubeConfig().stop_flush_seconds
    )
    assert init["command"][:2] == ["multihome", "install"]
    assert daemon["command"][-1] == "/etc/multihome/daemon-config.json"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert daemon[probe]["httpGet"] == {"path": path, "port": config.metrics_port}
    mounts = {m["mountPath"]: m for m in daemon["volumeMounts"]}
    for needed in (config.socket_dir, config.cni_config_dir, config.bin_dir, "/run/netns"):
        assert needed in mounts, needed
    assert config.cache_dir.startswith("/var/lib/cni/") and "/var/lib/cni" in mounts
    assert mounts["/run/netns"]["mountPropagation"] == "HostToContainer"
    # The device paths (kube settings kubeletSocket, kubeletCheckpoint, deviceInfoDir).
    kube = config.kube or KubeConfig()
    for path, writable in (
        (str(Path(kube.kubelet_socket).parent), False),  # connect() needs no writable mount
        (str(Path(kube.kubelet_checkpoint).parent), False),
        (kube.device_info_dir, True),
    ):
        assert path in mounts, path
        assert mounts[path].get("readOnly", False) is not writable, path
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]


def test_the_cluster_role_is_the_one_the_api_tests_play() -> None:
    # tests/netns/test_rbac.py checks it against the requests; tests/api/test_rbac.py
    # checks docs/configuration-kube.md against MULTIHOME.
    assert _one("ClusterRole", "multihome")["rules"] == MULTIHOME.manifest()["rules"]


def test_resources_match_the_benchmark() -> None:
    results = (ROOT / "bench/RESULTS.md").read_text()
    [peak] = re.findall(r"peak RSS with the cache loaded\s+([\d.]+) MiB", results)
    [daemon] = _one("DaemonSet")["spec"]["template"]["spec"]["containers"]
    request = daemon["resources"]["requests"]["memory"]
    assert request.endswith("Mi") and int(request[:-2]) >= float(peak)


# -- monitoring: every metric named exists ------------------------------------------

#: Made by Prometheus itself, not by the daemon.
_PROMETHEUS_OWN = {"up"}
_PROMQL_WORDS = {
    "sum", "by", "rate", "histogram_quantile", "min_over_time", "max", "or", "and", "le",
    "label_values", "node", "command", "outcome", "network", "plugin", "verb", "kind",
    "handler", "code", "job",
}  # fmt: skip


def exported_names() -> set[str]:
    """Every sample name the daemon's registry can produce (counters' _total, ...)."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_count", "_sum", "_created"),
        }.get(family.type, ("",))
        names.update(family.name + s for s in suffixes)
    return names


def _metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', "", expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges))
    return {w for w in words if w not in _PROMQL_WORDS and not w.startswith("__")}


def _expressions() -> list[tuple[str, str]]:
    out = [
        (rule["alert"], rule["expr"])
        for group in _one("PrometheusRule")["spec"]["groups"]
        for rule in group["rules"]
    ]
    dashboard = json.loads((DEPLOY / "monitoring/dashboard.json").read_text())
    for panel in dashboard["panels"]:
        out += [(panel["title"], target["expr"]) for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if isinstance(variable.get("query"), dict):
            out.append((variable["name"], variable["query"]["query"]))
    return out


def test_rules_and_dashboard_use_metrics_the_daemon_exports() -> None:
    exported = exported_names() | _PROMETHEUS_OWN
    used: set[str] = set()
    for where, expr in _expressions():
        names = _metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= exported, f"{where}: {sorted(names - exported)} are not exported"
        used |= names
    alerts = {rule["alert"] for group in _one("PrometheusRule")["spec"]["groups"]
              for rule in group["rules"]}  # fmt: skip
    assert {
        "MultihomeAddFailures",
        "MultihomeStatusWritesPending",
        "MultihomeSlowAdds",
        "MultihomeDaemonNotReady",
    } <= alerts
    assert "multihome_cni_requests_total" in used


def test_the_name_check_catches_a_misspelt_metric() -> None:
    assert _metric_names('rate(multihome_cni_request_total{command="ADD"}[5m])') == {
        "multihome_cni_request_total"
    }
    assert "multihome_cni_request_total" not in exported_names()


def test_the_dockerfile_and_the_e2e_image_agree_with_the_code() -> None:
    from multihome.daemon.install import DEFAULT_SHIM

    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    script = (ROOT / "scripts/e2e_image.py").read_text()
    assert f"/usr/lib/multihome/multihome-shim {DEFAULT_SHIM}" in dockerfile.replace(
        "/home/build/src/shim/multihome-shim", "/usr/lib/multihome/multihome-shim"
    )
    assert '"$1{DEFAULT_SHIM}"' in script  # the script copies the shim there
    for package in ("iproute2", "util-linux"):  # nsenter + ip: multihome.engine.podnet
        assert package in dockerfile and f'"{package}"' in script
    # The PodResources client (SR-IOV networks): both install the devices extra.
    assert "multihome-*.whl)[devices]" in dockerfile
    assert 'EXTRAS = "[devices]"' in script and "multihome{EXTRAS}" in script
    [daemon] = _one("DaemonSet")["spec"]["template"]["spec"]["containers"]
    assert '"/etc/multihome/daemon-config.json"]' in dockerfile
    assert daemon["command"][-1] == "/etc/multihome/daemon-config.json"
