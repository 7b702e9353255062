"""The Kubernetes source's settings and what its cache keeps of each object."""

from __future__ import annotations

import json

import pytest

from multihome.cluster.kube import KubeConfig, is_static, trim_nad, trim_pod


def test_settings_from_camel_case_keys():
    config = KubeConfig.from_mapping(
        {
            "kubeconfig": "/etc/kube.conf",
            "nodeName": "n1",
            "qps": 5,
            "burst": 10,
            "podWait": 2.5,
            "statusRetrySeconds": 0,
            "unknownKey": 1,
        }
    )
    assert config == KubeConfig(
        kubeconfig="/etc/kube.conf",
        node_name="n1",
        qps=5.0,
        burst=10,
        pod_wait=2.5,
        status_retry_seconds=0.0,
    )
    assert isinstance(config.qps, float)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"qps": 0}, "kube setting qps: 0 is not valid: expected a number above 0"),
        ({"burst": 2.5}, "kube setting burst: 2.5 is not valid: expected a whole number >= 1"),
        ({"podWait": -1}, "kube setting podWait: -1 is not valid: expected a number of seconds"),
        ({"requestTimeout": True}, "kube setting requestTimeout: True is not valid"),
        ({"nodeName": 7}, "kube setting nodeName: 7 is not valid: expected a string"),
    ],
)
def test_bad_settings_name_the_key_and_what_is_valid(data, message):
    with pytest.raises(ValueError, match=message):
        KubeConfig.from_mapping(data)


def test_defaults_have_no_sub_second_request_timeouts():
    config = KubeConfig()
    assert config.request_timeout >= 1 and config.pod_wait >= 1


def test_a_pod_keeps_only_what_multihome_reads():
    pod = {
        "metadata": {
            "name": "web",
            "namespace": "prod",
            "uid": "u1",
            "resourceVersion": "42",
            "labels": {"app": "web"},
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {
                "k8s.v1.cni.cncf.io/networks": "nad-a",
                "k8s.v1.cni.cncf.io/network-status": "[]",
                "v1.multus-cni.io/default-network": "calico",
                "kubernetes.io/config.source": "api",
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
            },
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "resourceClaimStatuses": [{"name": "gpu"}]},
    }
    assert trim_pod(pod) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": "prod",
            "uid": "u1",
            "resourceVersion": "42",
            "annotations": {
                "k8s.v1.cni.cncf.io/networks": "nad-a",
                "v1.multus-cni.io/default-network": "calico",
                "kubernetes.io/config.source": "api",
            },
        },
        "spec": {"nodeName": "n1"},
        "status": {"resourceClaimStatuses": [{"name": "gpu"}]},
    }


def test_a_nad_keeps_its_config_and_resource_name():
    nad = {
        "metadata": {
            "name": "a",
            "namespace": "default",
            "uid": "u",
            "resourceVersion": "7",
            "annotations": {
                "k8s.v1.cni.cncf.io/resourceName": "intel.com/sriov",
                "note": "dropped",
            },
        },
        "spec": {"config": '{"type": "macvlan"}'},
    }
    assert trim_nad(nad) == {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {
            "name": "a",
            "namespace": "default",
            "uid": "u",
            "resourceVersion": "7",
            "annotations": {"k8s.v1.cni.cncf.io/resourceName": "intel.com/sriov"},
        },
        "spec": {"config": '{"type": "macvlan"}'},
    }
    assert trim_nad({"metadata": {"name": "b"}})["spec"] == {}


@pytest.mark.parametrize(
    ("annotations", "static"),
    [
        ({}, False),
        ({"kubernetes.io/config.source": "api"}, False),
        ({"kubernetes.io/config.source": "file"}, True),
        ({"kubernetes.io/config.source": "http"}, True),
    ],
)
def test_static_pods_are_told_by_their_config_source(annotations, static):
    assert is_static({"metadata": {"annotations": annotations}}) is static


def test_cached_objects_share_their_namespace_string():
    # Decoded JSON makes a new string per object; a node's 1,000 NADs share a few namespaces.
    decoded = [
        json.loads(json.dumps({"metadata": {"name": n, "namespace": "team-a"}})) for n in "ab"
    ]
    first, second = (trim_nad(obj)["metadata"]["namespace"] for obj in decoded)
    assert decoded[0]["metadata"]["namespace"] is not decoded[1]["metadata"]["namespace"]
    assert first is second
