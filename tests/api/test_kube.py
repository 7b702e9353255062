"""The Kubernetes source against the API double: costs, the watch cache, failures.

Every count here is the double's own record of the requests it served, so a
test fails when the client makes a request it should not, whatever its own
counters say.  Waits are on the double's or the cache's change notifications,
never on the clock; the only time bounds are the source's configured ones,
kept short.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from multihome.cluster.credentials import Credentials
from multihome.cluster.kube import NADS_PATH, KubeConfig, KubeSource, trim_nad, trim_pod
from multihome.cluster.kubeclient import KubeClient
from multihome.cluster.pacing import Backoff
from multihome.cluster.source import STATUS_ANNOTATION
from multihome.cluster.watching import Reflector
from multihome.cni.errors import CNIError, Code
from multihome.testing.apiserver import ApiServerDouble
from multihome.testing.fakeclock import FakeTime

NODE = "node1"
TOKEN = "t0k3n-1"
NADS = "network-attachment-definitions"
WAIT = 10.0  # how long a test waits for something that must happen; never reached when it works


def pod(name: str, *, node: str = NODE, namespace: str = "default", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "pause"}]},
    }


def nad(name: str, *, config: str = '{"cniVersion": "1.0.0", "type": "macvlan"}', **meta: Any):
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": "default", **meta},
        "spec": {"config": config},
    }


def config(**overrides: Any) -> KubeConfig:
    """Short bounds and backoffs so that failure paths end quickly."""
    settings: dict[str, Any] = {
        "node_name": NODE,
        "request_timeout": 5.0,
        "retry_seconds": 1.0,
        "pod_wait": 0.3,
        "status_retry_seconds": 2.0,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "event_qps": 100.0,
    }
    settings.update(overrides)
    return KubeConfig(**settings)


@pytest.fixture
async def api() -> AsyncIterator[ApiServerDouble]:
    async with ApiServerDouble(tokens=[TOKEN]) as double:
        yield double


@pytest.fixture
def kubeconfig(api: ApiServerDouble, tmp_path: Path) -> Path:
    return api.write_kubeconfig(tmp_path / "kubeconfig")


async def warm(source: KubeSource, api: ApiServerDouble) -> None:
    """Both lists done and both watches open: from here on, requests are the test's."""
    assert await source.wait_ready(WAIT)
    await api.until(lambda: api.open_watches == 2, timeout=WAIT)


@pytest.fixture
async def source(api: ApiServerDouble, kubeconfig: Path) -> AsyncIterator[KubeSource]:
    async with KubeSource(config(kubeconfig=str(kubeconfig))) as the_source:
        await warm(the_source, api)
        yield the_source


def multus_statuses(pod_object: dict[str, Any]) -> list[dict[str, Any]]:
    """What NAD-client's ``GetNetworkStatus`` does: unmarshal into []NetworkStatus."""
    text = pod_object["metadata"]["annotations"][STATUS_ANNOTATION]
    statuses = json.loads(text)
    assert isinstance(statuses, list)
    types = {
        "name": str,
        "interface": str,
        "ips": list,
        "mac": str,
        "default": bool,
        "dns": dict,
        "gateway": list,
        "mtu": int,
        "device-info": dict,
    }
    for entry in statuses:
        for key, value in entry.items():
            assert isinstance(value, types.get(key, object)), (key, value)
    return statuses


def upstream_status(entries: list[dict[str, Any]]) -> str:
    # Multus' serialisation: each entry indented by four spaces, joined with ",".
    return "[" + ",".join(json.dumps(e, indent=4) for e in entries) + "]"


STATUS = [
    {
        "name": "cbr0",
        "interface": "eth0",
        "ips": ["10.244.1.5"],
        "mac": "0a:58:0a:f4:01:05",
        "default": True,
        "dns": {},
    },
    {
        "name": "default/nad-a",
        "interface": "net1",
        "ips": ["192.168.71.2"],
        "mac": "02:11:22:33:44:55",
        "dns": {},
    },
    {
        "name": "default/nad-b",
        "interface": "net2",
        "ips": ["192.168.72.2"],
        "mac": "02:11:22:33:44:56",
        "dns": {},
    },
]


# -- the ADD path's cost ------------------------------------------------------


async def test_warm_cache_add_costs_one_request_and_one_event(
    api: ApiServerDouble, kubeconfig: Path
):
    created = api.create(pod("web", annotations={"k8s.v1.cni.cncf.io/networks": "nad-a,nad-b"}))
    api.create(nad("nad-a"))
    api.create(nad("nad-b"))
    async with KubeSource(config(kubeconfig=str(kubeconfig))) as source:
        await warm(source, api)
        api.reset_requests()

        got = await source.get_pod("default", "web", uid=created["metadata"]["uid"])
        assert got is not None
        assert await source.get_nad("default", "nad-a") is not None
        assert await source.get_nad("default", "nad-b") is not None
        await source.set_network_status(got, upstream_status(STATUS))
        await source.emit_event(
            got,
            type="Normal",
            reason="AddedInterface",
            message="Add net1 [192.168.71.2/24] from default/nad-a, "
            "Add net2 [192.168.72.2/24] from default/nad-b",
        )
        # The event is queued, not sent: the ADD has answered by now.
        assert source.recorder.pending == 1
        assert api.requests() == Counter({("patch", "pods/status"): 1})

        await source.flush()
        assert api.requests() == Counter({("patch", "pods/status"): 1, ("create", "events"): 1})

    (event,) = api.events()
    assert event["involvedObject"]["uid"] == created["metadata"]["uid"]
    assert event["involvedObject"]["name"] == "web"
    assert (event["type"], event["reason"]) == ("Normal", "AddedInterface")
    assert event["message"].startswith("Add net1 [192.168.71.2/24] from default/nad-a")
    assert event["source"] == {"component": "multihome", "host": NODE}
    assert event["reportingComponent"] == "multihome"


async def test_status_annotation_is_what_a_multus_reader_parses(
    api: ApiServerDouble, source: KubeSource
):
    created = api.create(pod("web", annotations={"other": "kept"}))
    got = await source.get_pod("default", "web", uid=created["metadata"]["uid"])
    assert got is not None
    text = upstream_status(STATUS)
    await source.set_network_status(got, text)

    stored = api.get("pods", namespace="default", name="web")
    assert stored is not None
    assert stored["metadata"]["annotations"][STATUS_ANNOTATION] == text  # byte for byte
    assert multus_statuses(stored) == STATUS
    assert stored["metadata"]["annotations"]["other"] == "kept"  # only our key was touched
    assert stored["spec"] == created["spec"]

    await source.set_network_status(got, None)
    stored = api.get("pods", namespace="default", name="web")
    assert stored is not None
    assert STATUS_ANNOTATION not in stored["metadata"].get("annotations", {})
    assert api.count("patch", "pods/status") == 2
    assert api.count("update") == 0 and api.count("get", "pods") == 0


async def test_status_write_retries_conflicts_and_server_errors(
    api: ApiServerDouble, source: KubeSource
):
    got = await source.get_pod("default", "web", uid=api.create(pod("web"))["metadata"]["uid"])
    assert got is not None
    api.fail_next(1, code=409, verb="patch", resource="pods/status")
    api.fail_next(1, code=500, verb="patch", resource="pods/status")
    await source.set_network_status(got, "[]")
    assert api.count("patch", "pods/status") == 3
    stored = api.get("pods", namespace="default", name="web")
    assert stored is not None and stored["metadata"]["annotations"][STATUS_ANNOTATION] == "[]"


async def test_status_write_gives_up_after_its_bound_with_try_again(
    api: ApiServerDouble, kubeconfig: Path
):
    created = api.create(pod("web"))
    async with KubeSource(config(kubeconfig=str(kubeconfig), status_retry_seconds=0.1)) as source:
        assert await source.wait_ready(WAIT)
        got = await source.get_pod("default", "web", uid=created["metadata"]["uid"])
        assert got is not None
        api.fail_next(1000, code=500, verb="patch", resource="pods/status")
        with pytest.raises(CNIError) as failure:
            await source.set_network_status(got, "[]")
    assert failure.value.code == Code.TRY_AGAIN_LATER
    assert "pod default/web" in failure.value.msg
    assert api.count("patch", "pods/status") >= 1


async def test_status_write_for_a_gone_or_replaced_pod_is_tolerated(
    api: ApiServerDouble, source: KubeSource
):
    created = api.create(pod("web"))
    got = await source.get_pod("default", "web", uid=created["metadata"]["uid"])
    assert got is not None
    api.delete("pods", namespace="default", name="web")
    await source.set_network_status(got, "[]")  # 404: logged, not raised

    api.create(pod("web"))  # the same name, another pod
    await source.set_network_status(got, "[]")  # the old UID is a failed precondition
    stored = api.get("pods", namespace="default", name="web")
    assert stored is not None
    assert STATUS_ANNOTATION not in stored["metadata"].get("annotations", {})
    assert api.count("patch", "pods/status") == 2  # neither was retried


# -- events -------------------------------------------------------------------


async def test_repeated_events_are_sent_once(api: ApiServerDouble, source: KubeSource):
    web = api.create(pod("web"))
    for _ in range(3):
        await source.emit_event(
            web, type="Warning", reason="InvalidMAC", message="f1:fd:59:0b:bd:2b is multicast"
        )
    await source.emit_event(web, type="Warning", reason="InvalidMAC", message="another message")
    await source.flush()
    assert [e["message"] for e in api.events()] == [
        "f1:fd:59:0b:bd:2b is multicast",
        "another message",
    ]
    assert source.recorder.counts["deduplicated"] == 2
    assert source.recorder.counts["sent"] == 2


async def test_events_are_paced_by_their_own_budget(api: ApiServerDouble, kubeconfig: Path):
    web = api.create(pod("web"))
    t = FakeTime()
    settings = config(kubeconfig=str(kubeconfig), event_qps=2.0, event_burst=1)
    async with KubeSource(settings, clock=t.clock, sleep=t.sleep) as source:
        await warm(source, api)
        for i in range(3):
            await source.emit_event(web, type="Normal", reason="AddedInterface", message=f"m{i}")
        await source.flush()
    assert t.slept == pytest.approx([0.5, 0.5])
    assert [e["message"] for e in api.events()] == ["m0", "m1", "m2"]


async def test_at_stop_the_queued_events_go_at_the_clients_pace(
    api: ApiServerDouble, kubeconfig: Path
):
    web = api.create(pod("web"))
    t = FakeTime()
    settings = config(kubeconfig=str(kubeconfig), event_qps=0.01, event_burst=1)
    source = KubeSource(settings, clock=t.clock, sleep=t.sleep)
    await source.start()
    await warm(source, api)
    for i in range(3):
        await source.emit_event(web, type="Normal", reason="AddedInterface", message=f"m{i}")
    await source.stop()  # at 0.01 events/s the two left would need 200 s
    assert [e["message"] for e in api.events()] == ["m0", "m1", "m2"]
    assert sum(t.slept) < 100


async def test_an_event_that_cannot_be_sent_never_fails_the_caller(
    api: ApiServerDouble, source: KubeSource
):
    web = api.create(pod("web"))
    api.fail_next(1000, code=403, verb="create", resource="events")
    await source.emit_event(web, type="Normal", reason="AddedInterface", message="Add net1")
    await source.flush()
    assert source.recorder.counts["failed"] == 1
    assert api.events() == []


# -- the ADD-time pod lookup --------------------------------------------------


async def test_a_pod_bound_during_the_wait_comes_from_the_watch(
    api: ApiServerDouble, kubeconfig: Path
):
    unscheduled = api.create(pod("late", node=""))
    uid = unscheduled["metadata"]["uid"]
    async with KubeSource(config(kubeconfig=str(kubeconfig), pod_wait=WAIT)) as source:
        await warm(source, api)
        api.reset_requests()
        lookup = asyncio.create_task(source.get_pod("default", "late", uid=uid))
        await asyncio.sleep(0)  # one loop step: the lookup runs up to its wait
        assert source.pods.waiting == 1
        bound = dict(unscheduled, spec={**unscheduled["spec"], "nodeName": NODE})
        api.update(bound)  # the scheduler's binding: now the pod is this node's
        got = await lookup
    assert got is not None and got["metadata"]["uid"] == uid
    assert api.count("get") == 0


async def test_a_pod_the_watch_does_not_show_is_fetched_once(
    api: ApiServerDouble, source: KubeSource
):
    # Bound to another node, the pod never reaches this node's cache.
    created = api.create(pod("elsewhere", node="node2"))
    got = await source.get_pod("default", "elsewhere", uid=created["metadata"]["uid"])
    assert got == trim_pod(created)
    assert api.count("get", "pods") == 1


async def test_a_pod_that_does_not_exist_is_none(api: ApiServerDouble, source: KubeSource):
    assert await source.get_pod("default", "ghost", uid="3f1e0c3e") is None
    assert api.count("get", "pods") == 1


async def test_uid_mismatch_names_both_uids(api: ApiServerDouble, source: KubeSource):
    created = api.create(pod("web"))
    await source.pods.until(lambda: source.pods.get("default", "web") is not None, timeout=WAIT)
    with pytest.raises(CNIError) as failure:
        await source.get_pod("default", "web", uid="0d4e8d3a-old")
    assert "0d4e8d3a-old" in failure.value.msg
    assert created["metadata"]["uid"] in failure.value.msg
    assert failure.value.code == Code.INVALID_ENV


async def test_static_pods_are_exempt_from_the_uid_check(api: ApiServerDouble, source: KubeSource):
    api.create(pod("etcd-node1", annotations={"kubernetes.io/config.source": "file"}))
    mirror = await source.get_pod("default", "etcd-node1", uid="kubelet-side-uid")
    assert mirror is not None and mirror["metadata"]["name"] == "etcd-node1"

    api.create(pod("api-pod", annotations={"kubernetes.io/config.source": "api"}))
    with pytest.raises(CNIError):
        await source.get_pod("default", "api-pod", uid="kubelet-side-uid")


async def test_api_down_for_an_uncached_pod_is_try_again_later(
    api: ApiServerDouble, source: KubeSource
):
    cached = api.create(pod("cached"))
    await source.pods.until(lambda: source.pods.get("default", "cached") is not None, timeout=WAIT)
    await api.stop()

    with pytest.raises(CNIError) as failure:
        await source.get_pod("default", "new", uid="9a9e1d52")
    assert failure.value.code == Code.TRY_AGAIN_LATER
    assert "default/new" in failure.value.msg

    # What the cache holds is still served, without the API.
    got = await source.get_pod("default", "cached", uid=cached["metadata"]["uid"])
    assert got is not None
    assert await source.get_nad("default", "missing") is None


async def test_nads_come_from_the_cache_only(api: ApiServerDouble, source: KubeSource):
    api.reset_requests()
    assert await source.get_nad("default", "missing") is None
    assert api.count() == 0


# -- the watch cache ------------------------------------------------------------


async def test_a_nad_created_changed_and_deleted_shows_in_the_cache(
    api: ApiServerDouble, source: KubeSource
):
    nads = source.nads
    api.create(nad("net-a", annotations={"k8s.v1.cni.cncf.io/resourceName": "intel.com/sriov"}))
    assert await nads.until(lambda: nads.get("default", "net-a") is not None, timeout=WAIT)
    assert (await source.get_nad("default", "net-a")) == trim_nad(
        api.get(NADS, namespace="default", name="net-a") or {}
    )

    changed = api.get(NADS, namespace="default", name="net-a")
    assert changed is not None
    changed["spec"]["config"] = '{"cniVersion": "1.0.0", "type": "bridge"}'
    api.update(changed)

    def config_of() -> str:
        got = nads.get("default", "net-a")
        return got["spec"]["config"] if got else ""

    assert await nads.until(lambda: "bridge" in config_of(), timeout=WAIT)

    api.delete(NADS, namespace="default", name="net-a")
    assert await nads.until(lambda: nads.get("default", "net-a") is None, timeout=WAIT)
    assert api.count("list", NADS) == 1


def watched_from(api: ApiServerDouble, resource: str, rv: str) -> bool:
    return any(
        r.verb == "watch" and r.resource == resource and r.query.get("resourceVersion") == rv
        for r in api.request_log()
    )


async def test_a_closed_watch_resumes_from_the_last_resource_version(
    api: ApiServerDouble, source: KubeSource
):
    api.create(nad("net-a"))
    assert await source.nads.until(
        lambda: source.nads.get("default", "net-a") is not None, timeout=WAIT
    )
    last = source.nads.resource_version
    assert last == api.get(NADS, namespace="default", name="net-a")["metadata"]["resourceVersion"]

    assert api.close_watches() == 2
    await api.until(lambda: watched_from(api, NADS, last), timeout=WAIT)

    api.create(nad("net-b"))  # seen by the resumed watch
    assert await source.nads.until(
        lambda: source.nads.get("default", "net-b") is not None, timeout=WAIT
    )
    assert api.count("list", NADS) == 1 and api.count("list", "pods") == 1
    assert source.nads.lists == 1


async def test_a_bookmark_moves_the_resume_point(api: ApiServerDouble, source: KubeSource):
    api.create(pod("elsewhere", node="node2"))  # a change neither watch sees
    assert api.send_bookmarks() == 2
    now = str(api.resource_version)
    assert await source.nads.until(lambda: source.nads.resource_version == now, timeout=WAIT)
    api.close_watches()
    await api.until(lambda: watched_from(api, NADS, now), timeout=WAIT)


async def test_an_expired_resource_version_triggers_one_relist(
    api: ApiServerDouble, source: KubeSource
):
    api.create(nad("net-a"))
    api.create(pod("web"))
    assert await source.pods.until(
        lambda: source.pods.get("default", "web") is not None, timeout=WAIT
    )
    # A change neither watch sees, then compaction: both resume points are too old.
    api.create(pod("elsewhere", node="node2"))
    api.compact()
    api.close_watches()

    await api.until(
        lambda: (
            api.count("list", NADS) == 2
            and api.count("list", "pods") == 2
            and api.open_watches == 2
        ),
        timeout=WAIT,
    )
    assert (source.nads.lists, source.pods.lists) == (2, 2)
    assert source.nads.get("default", "net-a") is not None
    assert source.pods.get("default", "web") is not None
    assert source.pods.get("default", "elsewhere") is None
    assert api.count("list") == 4


async def test_an_expired_watch_status_code_also_relists(api: ApiServerDouble, source: KubeSource):
    # A 410 as the HTTP status of the watch request itself.
    api.fail_next(1, code=410, verb="watch", resource=NADS)
    api.close_watches()
    await api.until(lambda: api.count("list", NADS) == 2 and api.open_watches == 2, timeout=WAIT)
    assert source.nads.lists == 2


async def test_large_objects_stream_through_the_watch(api: ApiServerDouble, source: KubeSource):
    big = "x" * 200_000  # more than aiohttp's line limit; trimmed away in the cache
    api.create(
        pod("big", annotations={"example.com/blob": big, "k8s.v1.cni.cncf.io/networks": "nad-a"})
    )
    assert await source.pods.until(
        lambda: source.pods.get("default", "big") is not None, timeout=WAIT
    )
    cached = source.pods.get("default", "big")
    assert cached is not None
    assert cached["metadata"]["annotations"] == {"k8s.v1.cni.cncf.io/networks": "nad-a"}


async def test_list_is_paged(api: ApiServerDouble, kubeconfig: Path):
    for i in range(5):
        api.create(nad(f"net-{i}"))
    async with KubeSource(config(kubeconfig=str(kubeconfig), page_size=2)) as source:
        assert await source.wait_ready(WAIT)
        assert sorted(name for _, name in source.nads.objects) == [f"net-{i}" for i in range(5)]
    assert api.count("list", NADS) == 3


async def test_list_failures_back_off_with_growing_delays(api: ApiServerDouble):
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    client = KubeClient(Credentials(server=api.url, token=TOKEN), retry_seconds=0, sleep=sleep)
    reflector = Reflector(
        client,
        path=NADS_PATH,
        backoff=Backoff(initial=1.0, maximum=4.0, rng=lambda: 0.0),
        sleep=sleep,
    )
    api.fail_next(4, code=500, verb="list", resource=NADS)
    async with client:
        await reflector.run(_iterations=5)
    assert slept == [1.0, 2.0, 4.0, 4.0]
    assert reflector.synced.is_set() and reflector.lists == 1 and reflector.errors == 4


# -- credentials ------------------------------------------------------------------


def write_token(path: Path, token: str) -> None:
    # As the kubelet does: a new file swapped in, never a partial write.
    tmp = path.with_suffix(".new")
    tmp.write_text(token)
    tmp.replace(path)


async def test_a_rotated_token_file_is_used_without_restart(api: ApiServerDouble, tmp_path: Path):
    token_file = tmp_path / "token"
    write_token(token_file, TOKEN)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "k", "cluster": {"server": api.url}}],
                "users": [
                    {"name": "u", "user": {"tokenFile": "token"}}
                ],  # relative to the kubeconfig
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
            }
        )
    )
    async with KubeSource(config(kubeconfig=str(kubeconfig))) as source:
        await warm(source, api)
        web = api.create(pod("web"))

        write_token(token_file, "t0k3n-2")
        api.set_tokens("t0k3n-2")  # the old token is refused from now on
        await source.set_network_status(web, "[]")
        assert api.count("patch", "pods/status") == 1  # no 401 on the way

        api.close_watches()  # the watches come back with the new token too
        await api.until(lambda: api.open_watches == 2, timeout=WAIT)
    stored = api.get("pods", namespace="default", name="web")
    assert stored is not None and stored["metadata"]["annotations"][STATUS_ANNOTATION] == "[]"
    assert all(r.code != 401 for r in api.request_log())


async def test_a_401_rereads_a_token_file_that_looks_unchanged(
    api: ApiServerDouble, tmp_path: Path
):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    before = os.stat(token_file)
    creds = Credentials(server=api.url, token_file=str(token_file))
    async with KubeSource(config(), credentials=creds) as source:
        await warm(source, api)
        web = api.create(pod("web"))
        # Rewritten in place, same size, same mtime: only a 401 tells.
        token_file.write_text("t0k3n-9")
        os.utime(token_file, ns=(before.st_atime_ns, before.st_mtime_ns))
        api.set_tokens("t0k3n-9")
        await source.set_network_status(web, "[]")
    assert [r.code for r in api.request_log() if r.verb == "patch"] == [401, 200]


async def test_a_refused_pod_read_is_an_io_failure_not_try_again(
    api: ApiServerDouble, source: KubeSource
):
    api.fail_next(1, code=403, verb="get", resource="pods")
    with pytest.raises(CNIError) as failure:
        await source.get_pod("default", "web")  # no UID: no wait for the watch
    assert failure.value.code == Code.IO_FAILURE
    assert "failed to get pod default/web" in failure.value.msg
    assert "HTTP 403" in failure.value.details


async def test_the_dedup_memory_is_bounded_by_count(api: ApiServerDouble, source: KubeSource):
    web = api.create(pod("web"))
    source.recorder.dedup_size = 3
    for index in range(10):
        await source.emit_event(web, type="Normal", reason="AddedInterface", message=f"m{index}")
    assert len(source.recorder._seen) == 3
    # The oldest went first; the newest, m9, is still remembered as sent.
    await source.emit_event(web, type="Normal", reason="AddedInterface", message="m9")
    assert source.recorder.counts["deduplicated"] == 1
    await source.flush()
