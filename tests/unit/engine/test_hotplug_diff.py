"""The hot-plug diff: what a running pod keeps, loses and gets when its annotation changes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from multihome.engine.cache import CacheRecord
from multihome.engine.engine import _record
from multihome.engine.hotplug import DELEGATE, Change, diff
from multihome.networks.attachment import PodPlan, plan_pod
from multihome.networks.config import MultusConfig
from multihome.networks.names import free_ifname

from ..networks.helpers import CLUSTER, Nads, config, nad, pod, request

MACVLAN = {"cniVersion": "1.0.0", "type": "macvlan", "master": "eth1", "ipam": {"type": "static"}}
LOOKUP = Nads(
    nad("kube-system", "cluster", CLUSTER),
    nad("default", "net-a", MACVLAN),
    nad("default", "net-b", MACVLAN),
    nad("default", "net-c", MACVLAN),
    nad("kube-system", "net-c", MACVLAN),
    nad("default", "sriov", MACVLAN, **{"k8s.v1.cni.cncf.io/resourceName": "intel.com/vf"}),
)


def planned(networks: Any, cfg: MultusConfig | None = None) -> PodPlan:
    plan, findings = plan_pod(
        config=cfg or config(), pod=pod(networks=networks), request=request(), nads=LOOKUP
    )
    assert not [f for f in findings if f.severity == "error"], findings
    return plan


def attached(networks: Any, cfg: MultusConfig | None = None) -> CacheRecord:
    """The record an ADD of a pod with this annotation leaves."""
    cfg = cfg or config()
    return _record(request(), cfg, planned(networks, cfg))


def names(change: Change) -> dict[str, list[tuple[str, str]]]:
    return {
        "keep": [(c.ifname, c.network) for c in change.keep],
        "remove": [(c.ifname, c.network) for c in change.remove],
        "add": [(a.ifname, a.name) for a in change.add],
    }


def test_the_same_annotation_changes_nothing() -> None:
    record = attached("net-a,net-b")
    change = diff(record, planned("net-a,net-b"))
    assert change.empty
    assert names(change)["keep"] == [("net1", "default/net-a"), ("net2", "default/net-b")]


def test_an_added_network_gets_a_free_name_and_the_others_keep_theirs() -> None:
    record = attached("net-a")
    change = diff(record, planned("net-b,net-a"))  # net-b comes first now: net1 in a new pod
    assert names(change) == {
        "keep": [("net1", "default/net-a")],
        "remove": [],
        "add": [("net2", "default/net-b")],
    }


def test_a_removed_network_goes_and_its_name_is_not_reused() -> None:
    record = attached("net-a,net-b")
    change = diff(record, planned("net-b"))
    assert names(change) == {
        "keep": [("net2", "default/net-b")],
        "remove": [("net1", "default/net-a")],
        "add": [],
    }
    record.attachments = [a for a in record.attachments if a.ifname != "net1"]
    later = diff(record, planned("net-b,net-c"))
    assert names(later)["add"] == [("net3", "default/net-c")]  # net2 is held


def test_names_in_the_namespace_are_not_taken() -> None:
    change = diff(attached(None), planned("net-a"), taken={"net1", "vxlan0"})
    assert names(change)["add"] == [("net2", "default/net-a")]


def test_a_changed_wish_is_a_removal_and_an_addition() -> None:
    before = [{"name": "net-a", "interface": "lan0", "ips": ["10.1.1.5/24"]}]
    after = [{"name": "net-a", "interface": "lan0", "ips": ["10.1.1.6/24"]}]
    change = diff(attached(before), planned(after))
    assert names(change) == {
        "keep": [],
        "remove": [("lan0", "default/net-a")],
        "add": [("lan0", "default/net-a")],
    }
    assert change.add[0].capability_args["ips"] == ["10.1.1.6/24"]


def test_a_pod_without_the_annotation_gets_networks() -> None:
    record = attached(None)
    assert [a.ifname for a in record.attachments] == ["eth0"]
    assert names(diff(record, planned("net-a")))["add"] == [("net1", "default/net-a")]


def test_a_wanted_interface_name_held_by_another_network_is_a_problem() -> None:
    change = diff(
        attached("net-a"), planned([{"name": "net-a"}, {"name": "net-b", "interface": "net1"}])
    )
    assert (
        change.problems and "net1" in change.problems[0] and "default/net-a" in change.problems[0]
    )
    assert not change.add


def test_a_device_network_is_not_hot_plugged() -> None:
    change = diff(attached(None), planned("sriov"))
    assert change.problems and "device" in change.problems[0]


def test_the_configuration_and_delegate_networks_stay() -> None:
    cfg = config(defaultNetworks=["net-c"])
    record = attached("net-a", cfg)
    delegated = dataclasses.replace(record.attachments[1], ifname="dyn0", origin=DELEGATE, wish="")
    record.attachments.append(delegated)
    change = diff(record, planned(None, cfg))
    assert names(change) == {"keep": [], "remove": [("net2", "default/net-a")], "add": []}


def test_a_record_from_before_wishes_matches_by_what_ran() -> None:
    record = attached("net-a")
    for cached in record.attachments:
        cached.wish = ""
    assert diff(record, planned("net-a")).empty
    assert names(diff(record, planned([{"name": "net-a", "mac": "02:00:00:00:00:09"}])))[
        "remove"
    ] == [("net1", "default/net-a")]


@pytest.mark.parametrize(
    ("preferred", "taken", "want"),
    [
        ("net2", set(), "net2"),
        ("net2", {"net2"}, "net3"),
        ("net2", {"net2", "net3"}, "net4"),
        ("", {"net1"}, "net2"),
        ("lan0", {"lan0"}, "net1"),
    ],
)
def test_free_ifname(preferred: str, taken: set[str], want: str) -> None:
    assert free_ifname(preferred, taken) == want
