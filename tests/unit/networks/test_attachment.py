"""Planning a pod: order, interface names, CNI_ARGS, cni-args, capability args, devices."""

from __future__ import annotations

import json
from typing import Any

import pytest

from multihome.networks.attachment import PodPlan, plan_pod, referenced_nads, validate_pod
from multihome.networks.confdir import FileSnapshot
from multihome.networks.config import MultusConfig
from multihome.networks.findings import Finding, to_cni_error

from .helpers import CLUSTER, Nads, by_code, codes, config, nad, pod, request

MACVLAN = {"cniVersion": "1.0.0", "type": "macvlan", "master": "eth1", "ipam": {"type": "dhcp"}}
TUNED = {
    "cniVersion": "1.0.0",
    "plugins": [
        {"type": "macvlan", "master": "eth1", "ipam": {"type": "static"}},
        {"type": "tuning", "capabilities": {"mac": True, "ips": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}},
    ],
}


def nads(*extra: dict[str, Any]) -> Nads:
    return Nads(
        nad("kube-system", "cluster", CLUSTER),
        nad("default", "net-a", MACVLAN),
        nad("default", "net-b", MACVLAN),
        nad("default", "tuned", TUNED),
        nad("other", "net-c", MACVLAN),
        *extra,
    )


def plan(
    the_pod: dict[str, Any] | None,
    *,
    cfg: MultusConfig | None = None,
    lookup: Nads | None = None,
    **kwargs: Any,
) -> tuple[PodPlan, list[Finding]]:
    return plan_pod(
        config=cfg or config(),
        pod=the_pod,
        request=kwargs.pop("req", request()),
        nads=lookup or nads(),
        **kwargs,
    )


def summary(the_plan: PodPlan) -> list[tuple[str, str, bool]]:
    return [(a.name, a.ifname, a.is_default) for a in the_plan.attachments]


# -- order and interface names -------------------------------------------------------


def test_cluster_network_only() -> None:
    the_plan, findings = plan(pod())
    assert findings == []
    assert summary(the_plan) == [("kube-system/cluster", "eth0", True)]
    assert (the_plan.namespace, the_plan.name, the_plan.uid, the_plan.container_id) == (
        "default",
        "pod-1",
        "uid-1",
        "ctr-1",
    )
    assert the_plan.cluster_network is the_plan.attachments[0]


def test_order_cluster_default_networks_annotation() -> None:
    cfg = config(defaultNetworks=["net-a"], multusNamespace="default", clusterNetwork="cluster2")
    lookup = nads(nad("default", "cluster2", CLUSTER))
    the_plan, findings = plan(pod(networks="net-b, other/net-c@eth5"), cfg=cfg, lookup=lookup)
    assert findings == []
    assert summary(the_plan) == [
        ("default/cluster2", "eth0", True),
        ("default/net-a", "net1", False),
        ("default/net-b", "net2", False),
        ("other/net-c", "eth5", False),
    ]
    assert [a.path for a in the_plan.attachments] == [
        "clusterNetwork",
        "defaultNetworks[0]",
        "networks[0]",
        "networks[1]",
    ]


def test_generated_names_skip_names_asked_for_elsewhere() -> None:
    # Multus would name the first net1 too and fail at exec time on the collision.
    the_plan, findings = plan(pod(networks="net-a, net-b@net1, net-a"))
    assert findings == []
    assert [a.ifname for a in the_plan.attachments] == ["eth0", "net2", "net1", "net3"]


def test_the_same_network_twice_is_two_attachments() -> None:
    the_plan, _ = plan(pod(networks="net-a,net-a"))
    assert summary(the_plan)[1:] == [
        ("default/net-a", "net1", False),
        ("default/net-a", "net2", False),
    ]


@pytest.mark.parametrize(
    ("networks", "path"),
    [
        ("net-a@eth1, net-b@eth1", "networks[1].interface"),
        ("net-a@eth0", "networks[0].interface"),
        (
            [{"name": "net-a", "interface": "x"}, {"name": "net-b", "interfaceRequest": "x"}],
            "networks[1].interface",
        ),
    ],
)
def test_duplicate_interface_names_are_refused(networks: Any, path: str) -> None:
    _, findings = plan(pod(networks=networks))
    finding = by_code(findings, "interface-duplicate")
    assert finding.path == path
    assert finding.severity == "error"


def test_runtime_ifname_is_the_cluster_networks() -> None:
    the_plan, _ = plan(pod(networks="net-a"), req=request(ifname="eth9"))
    assert [a.ifname for a in the_plan.attachments] == ["eth9", "net1"]


def test_system_namespaces_get_no_default_networks() -> None:
    cfg = config(defaultNetworks=["sidecar"], systemNamespaces=["kube-system", "admin"])
    lookup = nads(nad("kube-system", "sidecar", MACVLAN))
    the_plan, _ = plan(
        pod(namespace="team"),
        cfg=cfg,
        lookup=lookup,
        req=request(args="K8S_POD_NAMESPACE=team;K8S_POD_NAME=p"),
    )
    assert summary(the_plan) == [
        ("kube-system/cluster", "eth0", True),
        ("kube-system/sidecar", "net1", False),
    ]
    the_plan, _ = plan(
        pod(namespace="admin"),
        cfg=cfg,
        lookup=lookup,
        req=request(args="K8S_POD_NAMESPACE=admin;K8S_POD_NAME=p"),
    )
    assert summary(the_plan) == [("kube-system/cluster", "eth0", True)]


def test_inline_delegates_mode() -> None:
    cfg = MultusConfig.parse(
        json.dumps(
            {
                "cniVersion": "0.3.1",
                "name": "multus",
                "delegates": [
                    {"cniVersion": "0.3.1", "name": "flannel.1", "type": "flannel"},
                    {"cniVersion": "0.3.1", "name": "extra", "type": "macvlan"},
                ],
            }
        )
    )
    the_plan, findings = plan(pod(networks="net-a"), cfg=cfg)
    assert findings == []
    assert summary(the_plan) == [
        ("flannel.1", "eth0", True),
        ("extra", "net1", False),
        ("default/net-a", "net2", False),
    ]


def test_no_pod_means_the_configs_networks_only() -> None:
    the_plan, findings = plan(None, req=request(args="K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"))
    assert findings == []
    assert summary(the_plan) == [("kube-system/cluster", "eth0", True)]
    assert (the_plan.namespace, the_plan.name) == ("ns", "p")


# -- the default-network annotation -----------------------------------------------------


def test_default_network_annotation_replaces_the_cluster_network() -> None:
    lookup = nads(nad("kube-system", "alt", CLUSTER), nad("team", "alt2", CLUSTER))
    the_plan, findings = plan(pod(default_network="alt", networks="net-a"), lookup=lookup)
    assert findings == []
    assert summary(the_plan) == [
        ("kube-system/alt", "eth0", True),
        ("default/net-a", "net1", False),
    ]
    assert ("kube-system", "cluster") not in lookup.calls
    the_plan, _ = plan(pod(default_network="team/alt2@eth7"), lookup=lookup)
    assert summary(the_plan) == [("team/alt2", "eth7", True)]


def test_default_network_requests_reach_the_cluster_network() -> None:
    lookup = nads(nad("kube-system", "alt", TUNED))
    the_plan, _ = plan(
        pod(default_network=[{"name": "alt", "mac": "02:00:00:00:00:09"}]), lookup=lookup
    )
    cluster = the_plan.attachments[0]
    assert ("MAC", "02:00:00:00:00:09") in cluster.cni_args
    assert cluster.capability_args["mac"] == "02:00:00:00:00:09"


def test_default_network_naming_two_networks_is_an_error() -> None:
    _, findings = plan(pod(default_network="a,b"))
    assert by_code(findings, "default-network-multiple").path == "default-network"


def test_namespace_isolation_covers_the_default_network_annotation() -> None:
    # Upstream checks only the networks annotation: a pod could take another
    # namespace's NAD as its eth0 through default-network.
    cfg = config(namespaceIsolation=True)
    lookup = nads(nad("team", "alt", CLUSTER), nad("kube-system", "alt", CLUSTER))
    the_plan, findings = plan(pod(default_network="team/alt"), cfg=cfg, lookup=lookup)
    finding = by_code(findings, "namespace-isolation")
    assert finding.path == "default-network[0].namespace"
    assert "'default'" in finding.message and "'team'" in finding.message
    assert the_plan.attachments == ()
    # The pod's own namespace, the global namespaces and the multus namespace
    # (where a bare name resolves) stay reachable.
    for value in ("alt", "kube-system/alt", "default/net-a"):
        _, findings = plan(pod(default_network=value), cfg=cfg, lookup=lookup)
        assert findings == [], value


# -- NAD lookups and isolation ----------------------------------------------------------------


def test_unknown_nad() -> None:
    the_plan, findings = plan(pod(networks="net-a, ghost"))
    finding = by_code(findings, "nad-not-found")
    assert finding.path == "networks[1]"
    assert "(ghost)" in finding.message and "(default)" in finding.message
    assert [a.name for a in the_plan.attachments] == ["kube-system/cluster", "default/net-a"]
    error = to_cni_error(findings)
    assert error is not None and error.code == 7 and "networks[1]" in error.msg


def test_namespace_isolation() -> None:
    cfg = config(namespaceIsolation=True)
    lookup = nads(nad("default", "shared", MACVLAN))
    _, findings = plan(
        pod(namespace="team", networks="other/net-c"),
        cfg=cfg,
        lookup=lookup,
        req=request(args="K8S_POD_NAMESPACE=team;K8S_POD_NAME=p"),
    )
    finding = by_code(findings, "namespace-isolation")
    assert finding.path == "networks[0].namespace"
    assert "team" in finding.message and "other" in finding.message
    # The global namespaces (default: "default") stay reachable.
    _, findings = plan(
        pod(namespace="team", networks="default/shared"),
        cfg=cfg,
        lookup=lookup,
        req=request(args="K8S_POD_NAMESPACE=team;K8S_POD_NAME=p"),
    )
    assert findings == []
    cfg = config(namespaceIsolation=True, globalNamespaces="other")
    _, findings = plan(
        pod(namespace="team", networks="other/net-c"),
        cfg=cfg,
        lookup=lookup,
        req=request(args="K8S_POD_NAMESPACE=team;K8S_POD_NAME=p"),
    )
    assert findings == []


def test_missing_cluster_network() -> None:
    the_plan, findings = plan(pod(), cfg=config(clusterNetwork="nowhere"))
    assert by_code(findings, "network-not-found").path == "clusterNetwork"
    assert the_plan.cluster_network is None


def test_referenced_nads() -> None:
    cfg = config(defaultNetworks=["net-a", "/etc/cni/x.conf", "infra/y"])
    the_pod = pod(networks="net-b, other/net-c", default_network="team/alt")
    assert referenced_nads(config=cfg, pod=the_pod) == [
        ("team", "alt"),
        ("kube-system", "net-a"),
        ("infra", "y"),
        ("default", "net-b"),
        ("other", "net-c"),
    ]
    assert referenced_nads(config=cfg, pod=None) == [
        ("kube-system", "cluster"),
        ("kube-system", "net-a"),
        ("infra", "y"),
    ]


# -- CNI_ARGS ----------------------------------------------------------------------------------


def test_cni_args_in_upstream_order() -> None:
    req = request(
        args="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-1;"
        "K8S_POD_INFRA_CONTAINER_ID=sandbox-9;K8S_POD_UID=uid-1;RUNTIME_EXTRA=x"
    )
    the_plan, _ = plan(
        pod(
            networks=[
                {"name": "tuned", "mac": "02:00:00:00:00:01", "ips": ["10.1.1.5/24", "fd00::5/64"]}
            ]
        ),
        req=req,
    )
    cluster, tuned = the_plan.attachments
    base = (
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-1;"
        "K8S_POD_INFRA_CONTAINER_ID=sandbox-9;K8S_POD_UID=uid-1"
    )
    # The runtime's other args go to the cluster network only, once.
    assert cluster.cni_args_text == base + ";RUNTIME_EXTRA=x"
    assert tuned.cni_args_text == base + ";MAC=02:00:00:00:00:01;IP=10.1.1.5/24,fd00::5/64"


def test_cni_args_fall_back_to_the_pod_and_container_id() -> None:
    the_plan, _ = plan(
        pod(namespace="ns", name="p", uid="u"), req=request(container_id="c9", args="X=1")
    )
    assert the_plan.attachments[0].cni_args == (
        ("IgnoreUnknown", "true"),
        ("K8S_POD_NAMESPACE", "ns"),
        ("K8S_POD_NAME", "p"),
        ("K8S_POD_INFRA_CONTAINER_ID", "c9"),
        ("K8S_POD_UID", "u"),
        ("X", "1"),
    )


# -- capability arguments ------------------------------------------------------------------------


def test_capability_args_and_what_each_plugin_receives() -> None:
    the_plan, findings = plan(
        pod(
            networks=[
                {
                    "name": "tuned",
                    "mac": "02:00:00:00:00:01",
                    "ips": ["10.1.1.5/24"],
                    "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
                    "bandwidth": {"ingressRate": 1000, "ingressBurst": 100},
                }
            ]
        )
    )
    assert findings == []
    tuned = the_plan.attachments[1]
    assert tuned.capability_args == {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
        "bandwidth": {"ingressRate": 1000, "ingressBurst": 100, "egressRate": 0, "egressBurst": 0},
        "ips": ["10.1.1.5/24"],
        "mac": "02:00:00:00:00:01",
    }
    assert tuned.runtime_configs() == [
        {},
        {"mac": "02:00:00:00:00:01", "ips": ["10.1.1.5/24"]},
        {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
        {
            "bandwidth": {
                "ingressRate": 1000,
                "ingressBurst": 100,
                "egressRate": 0,
                "egressBurst": 0,
            }
        },
    ]


def test_runtime_config_goes_to_the_cluster_network_only() -> None:
    runtime = {
        "portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}],
        "dns": {"servers": ["10.96.0.10"]},
    }
    cluster_conf = {
        "cniVersion": "1.0.0",
        "name": "k8s",
        "plugins": [
            {"type": "bridge"},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    lookup = nads(nad("kube-system", "cluster", cluster_conf))
    the_plan, _ = plan(pod(networks="tuned"), cfg=config(runtimeConfig=runtime), lookup=lookup)
    cluster, tuned = the_plan.attachments
    # Every runtime key reaches the cluster network (libcni filters by capability) ...
    assert cluster.capability_args == runtime
    assert cluster.runtime_configs() == [{}, {"portMappings": runtime["portMappings"]}]
    # ... and none leaks to the secondary network, although its portmap declares the capability.
    assert tuned.capability_args == {}
    assert tuned.runtime_configs() == [{}, {}, {}, {}]


def test_infiniband_guid_capability() -> None:
    ib = {"cniVersion": "1.0.0", "type": "ib-sriov", "capabilities": {"infinibandGUID": True}}
    the_plan, findings = plan(
        pod(networks=[{"name": "ib", "infiniband-guid": "c2:11:22:33:44:55:66:77"}]),
        lookup=nads(nad("default", "ib", ib)),
    )
    assert findings == []
    assert the_plan.attachments[1].runtime_configs() == [
        {"infinibandGUID": "c2:11:22:33:44:55:66:77"}
    ]


# -- cni-args ------------------------------------------------------------------------------------


def test_cni_args_become_args_cni_of_a_single_config() -> None:
    the_plan, _ = plan(pod(networks=[{"name": "net-a", "cni-args": {"k": "v", "n": 2}}]))
    conf = the_plan.attachments[1].conf
    assert json.loads(conf.plugins[0].text)["args"] == {"cni": {"k": "v", "n": 2}}
    assert conf.plugins[0].text.startswith(
        '{"cniVersion":"1.0.0","type":"macvlan","master":"eth1","ipam":{"type": "dhcp"},'
    )


def test_cni_args_merge_with_the_nads_and_win() -> None:
    conf = {
        "cniVersion": "1.0.0",
        "plugins": [
            {"type": "a", "args": {"cni": {"keep": 1, "over": "nad"}, "other": {"x": 1}}},
            {"type": "b"},
        ],
    }
    the_plan, _ = plan(
        pod(networks=[{"name": "merged", "cni-args": {"over": "pod", "new": True}}]),
        lookup=nads(nad("default", "merged", conf)),
    )
    plugins = [json.loads(p.text) for p in the_plan.attachments[1].conf.plugins]
    assert plugins[0]["args"] == {"cni": {"keep": 1, "over": "pod", "new": True}, "other": {"x": 1}}
    assert plugins[1]["args"] == {"cni": {"over": "pod", "new": True}}
    assert the_plan.attachments[1].conf.name == "merged"


def test_cni_args_conflict_with_a_non_object_args_cni() -> None:
    conf = {"cniVersion": "1.0.0", "type": "a", "args": {"cni": "text"}}
    the_plan, findings = plan(
        pod(networks=[{"name": "odd", "cni-args": {"k": 1}}]),
        lookup=nads(nad("default", "odd", conf)),
    )
    assert by_code(findings, "cni-args-conflict").path == "networks[0].cni-args"
    assert len(the_plan.attachments) == 1


# -- devices -------------------------------------------------------------------------------------

SRIOV = {"cniVersion": "1.0.0", "type": "sriov", "capabilities": {"deviceID": True}}


def test_device_plugin_ids_are_assigned_in_order_and_injected() -> None:
    lookup = nads(nad("default", "sriov", SRIOV, **{"k8s.v1.cni.cncf.io/resourceName": "r/vf"}))
    the_plan, findings = plan(
        pod(networks="sriov, sriov, sriov"),
        lookup=lookup,
        devices={"r/vf": ["0000:03:00.1", "0000:03:00.2"]},
    )
    (missing,) = findings
    assert (missing.code, missing.severity, missing.path) == (
        "device-missing",
        "error",
        "networks[2]",
    )
    assert "default/sriov (net3)" in missing.message
    assert "'r/vf'" in missing.message
    assert "allocated 2 to the pod and 3 of its networks" in missing.message
    first, second, third = the_plan.attachments[1:]
    assert (first.device_id, second.device_id, third.device_id) == (
        "0000:03:00.1",
        "0000:03:00.2",
        "",
    )
    assert json.loads(first.conf.plugins[0].text)["deviceID"] == "0000:03:00.1"
    assert json.loads(first.conf.plugins[0].text)["pciBusID"] == "0000:03:00.1"
    assert first.capability_args["deviceID"] == "0000:03:00.1"
    assert first.capability_args["CNIDeviceInfoFile"] == (
        "/var/run/k8s.cni.cncf.io/devinfo/cni/default-sriov-ctr-1_net1"
    )
    assert "deviceID" not in json.loads(third.conf.plugins[0].text)


def test_device_ids_rewrite_only_their_members_of_every_plugin() -> None:
    text = (
        '{"cniVersion":"1.0.0","name":"vf","plugins":[{"type":"sriov","min_tx_rate": 1e2,'
        '  "deviceID":"old"},\n {"type":"tuning",'
        '"sysctl":{"net.ipv4.conf.IFNAME.arp_notify":"1"}}]}'
    )
    lookup = nads(nad("default", "vf", text, **{"k8s.v1.cni.cncf.io/resourceName": "r/vf"}))
    the_plan, findings = plan(pod(networks="vf"), lookup=lookup, devices={"r/vf": ["0000:03:00.4"]})
    assert findings == []
    sriov, tuning = (p.text for p in the_plan.attachments[1].conf.plugins)
    assert json.loads(sriov)["deviceID"] == json.loads(sriov)["pciBusID"] == "0000:03:00.4"
    # Member values keep their bytes (Multus re-marshals: 1e2 would become 100).
    assert sriov.startswith('{"type":"sriov","min_tx_rate":1e2,"deviceID":"0000:03:00.4",')
    assert '"sysctl":{"net.ipv4.conf.IFNAME.arp_notify":"1"}' in tuning
    assert json.loads(tuning)["pciBusID"] == "0000:03:00.4"
    assert the_plan.attachments[1].resource_name == "r/vf"


def test_no_device_map_means_no_device_finding() -> None:
    lookup = nads(nad("default", "sriov", SRIOV, **{"k8s.v1.cni.cncf.io/resourceName": "r/vf"}))
    assert plan(pod(networks="sriov"), lookup=lookup)[1] == []
    assert codes(plan(pod(networks="sriov"), lookup=lookup, devices={})[1]) == ["device-missing"]


def test_annotation_device_id_is_used_unless_the_device_plugin_assigned_one() -> None:
    lookup = nads(nad("default", "sriov", SRIOV, **{"k8s.v1.cni.cncf.io/resourceName": "r/vf"}))
    networks = [{"name": "sriov", "deviceID": "0000:09:00.0"}]
    the_plan, findings = plan(pod(networks=networks), lookup=lookup)
    assert findings == []
    attachment = the_plan.attachments[1]
    assert attachment.capability_args["deviceID"] == "0000:09:00.0"
    # Not injected into the config bytes (as in Multus).
    assert "deviceID" not in json.loads(attachment.conf.plugins[0].text)
    the_plan, findings = plan(
        pod(networks=networks), lookup=lookup, devices={"r/vf": ["0000:03:00.1"]}
    )
    assert codes(findings) == ["device-id-ignored"]
    assert the_plan.attachments[1].capability_args["deviceID"] == "0000:03:00.1"


# -- auxiliary chain -----------------------------------------------------------------------------


def test_auxiliary_chain() -> None:
    files = FileSnapshot(
        {
            "/etc/cni/net.d/10-calico.conflist": json.dumps(
                {"cniVersion": "0.4.0", "name": "k8s-pod-network", "plugins": [{"type": "calico"}]}
            ),
            "/etc/cni/net.d/aux/10-sysctl.conf": '{"type": "tuning", "sysctl": {}}',
        }
    )
    cfg = config(clusterNetwork="/etc/cni/net.d/10-calico.conflist", auxiliaryCNIChainName="aux")
    the_plan, findings = plan(pod(networks="net-a"), cfg=cfg, files=files)
    assert findings == []
    assert summary(the_plan) == [
        ("k8s-pod-network", "eth0", True),
        ("default/net-a", "net1", False),
        ("aux", "net2", False),
    ]
    aux = the_plan.attachments[2].conf
    assert (aux.name, aux.cni_version) == ("aux", "1.0.0")
    assert [p.type for p in aux.plugins] == ["passthru", "tuning"]


def test_auxiliary_chain_needs_a_cluster_network_path() -> None:
    _, findings = plan(pod(), cfg=config(auxiliaryCNIChainName="aux"))
    assert by_code(findings, "aux-chain-invalid").severity == "error"


def test_auxiliary_chain_without_plugins_is_skipped() -> None:
    files = FileSnapshot({"/etc/cni/net.d/x.conf": json.dumps(CLUSTER)})
    cfg = config(clusterNetwork="/etc/cni/net.d/x.conf", auxiliaryCNIChainName="aux")
    the_plan, findings = plan(pod(), cfg=cfg, files=files)
    assert findings == []
    assert len(the_plan.attachments) == 1


# -- findings through the plan -----------------------------------------------------------------


def test_validate_pod_returns_all_findings() -> None:
    findings = validate_pod(
        config=config(),
        pod=pod(networks=[{"name": "net-a", "mac": "01:00:00:00:00:01"}, {"name": "ghost"}]),
        nads=nads(),
    )
    assert codes(findings) == ["mac-multicast", "nad-not-found"]
    error = to_cni_error(findings)
    assert error is not None
    assert error.msg.startswith("2 errors: networks[0].mac: ")
    assert "networks[1]: cannot find" in error.msg


def test_malformed_pod() -> None:
    _, findings = plan({"metadata": {"name": 5, "annotations": "x"}})
    assert codes(findings) == ["pod-invalid", "pod-invalid"]
    _, findings = plan({"metadata": "x"})
    assert codes(findings) == ["pod-invalid"]
