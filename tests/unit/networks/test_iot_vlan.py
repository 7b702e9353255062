"""Acceptance (issue 3): the iot-vlan NAD and a pod asking for an IP and a multicast MAC.

The NAD chains macvlan (static IPAM with a route, no capabilities) and tuning
(capabilities mac and ips); the fixtures are shared with the engine's tests.
"""

from __future__ import annotations

import json

from multihome.networks.attachment import plan_pod
from multihome.networks.findings import to_cni_error

from .helpers import CLUSTER, Nads, by_code, config, fixture, nad, request

ARGS = (
    "IgnoreUnknown=1;K8S_POD_NAMESPACE=iot;K8S_POD_NAME=sensor-1;"
    "K8S_POD_INFRA_CONTAINER_ID=ctr-1;K8S_POD_UID=6f1c1f4e-3a52-4c8e-9d4b-2f0e7c1a9b10"
)


def run(pod: dict):
    nads = Nads(nad("kube-system", "cluster", CLUSTER), fixture("iot-vlan.nad.json"))
    return plan_pod(config=config(), pod=pod, request=request(args=ARGS), nads=nads)


def test_multicast_mac_is_named_before_any_plugin_runs() -> None:
    _, findings = run(fixture("iot-sensor.pod.json"))
    finding = by_code(findings, "mac-multicast")
    assert finding.severity == "error"
    assert finding.path == "networks[0].mac"
    assert "f1:fd:59:0b:bd:2b" in finding.message
    assert "locally administered unicast" in finding.hint
    error = to_cni_error(findings)
    assert error is not None
    assert error.code == 7
    assert "f1:fd:59:0b:bd:2b" in error.msg
    assert "02:fd:59:0b:bd:2b" in error.details


def test_without_the_mac_the_plan_routes_the_ip_to_the_right_places() -> None:
    pod = fixture("iot-sensor.pod.json")
    pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] = json.dumps(
        [{"name": "iot-vlan", "ips": ["192.168.50.8/24"]}]
    )
    plan, findings = run(pod)
    assert findings == []
    cluster, iot = plan.attachments
    assert (cluster.ifname, iot.name, iot.ifname) == ("eth0", "iot/iot-vlan", "net1")
    macvlan, tuning = iot.runtime_configs()
    # macvlan declares no capability: it gets no runtimeConfig at all ...
    assert macvlan == {}
    # ... tuning declares mac and ips: it gets the IP (no MAC was asked for).
    assert tuning == {"ips": ["192.168.50.8/24"]}
    # The static IPAM of macvlan reads the address from CNI_ARGS.
    assert ("IP", "192.168.50.8/24") in iot.cni_args
    assert iot.cni_args_text.endswith(";IP=192.168.50.8/24")
    assert not any(key == "MAC" for key, _ in iot.cni_args)
    # The delegate configuration is the NAD's, byte for byte.
    assert iot.conf.text == fixture("iot-vlan.nad.json")["spec"]["config"]
