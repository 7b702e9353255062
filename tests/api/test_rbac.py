"""RBAC: the API double plays a ClusterRole exactly; the Kubernetes source makes do with it.

An operator who swaps Multus for multihome keeps Multus's ClusterRole.
Multus v4.0.2's grants pods get/update only, HEAD's adds list/watch; neither
grants ``patch`` on ``pods/status``.  The source must write network-status
with what the role grants and serve pods by GET where it may not watch them.
Counts are the double's own record of what it served.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from multihome.cluster.kube import KubeConfig, KubeSource
from multihome.cluster.pacing import Backoff
from multihome.cluster.source import STATUS_ANNOTATION
from multihome.cluster.watching import Reflector
from multihome.cni.errors import CNIError, Code
from multihome.testing.apiserver import ApiServerDouble
from multihome.testing.apiserver.roles import (
    MULTIHOME,
    MULTUS_HEAD,
    MULTUS_V4_0_2,
    ROLES,
    Role,
)
from multihome.testing.fakeclock import FakeTime

NODE = "node1"
WAIT = 10.0
USER = "system:serviceaccount:kube-system:multus"


def pod(name: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", **meta},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "pause"}]},
    }


def nad(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"config": '{"cniVersion": "1.0.0", "type": "macvlan"}'},
    }


def config(kubeconfig: Path, **overrides: Any) -> KubeConfig:
    settings: dict[str, Any] = {
        "kubeconfig": str(kubeconfig),
        "node_name": NODE,
        "request_timeout": 5.0,
        "retry_seconds": 1.0,
        "pod_wait": 0.3,
        "status_retry_seconds": 2.0,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
    }
    settings.update(overrides)
    return KubeConfig(**settings)


async def raw(api: ApiServerDouble, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, api.url + path, json=body, headers=headers) as response,
    ):
        return response.status, await response.json()


# -- the double plays the role ------------------------------------------------------


async def test_a_denial_is_the_real_servers_403() -> None:
    async with ApiServerDouble(role=MULTUS_HEAD) as api:
        api.create(pod("web"))
        code, body = await raw(
            api,
            "PATCH",
            "/api/v1/namespaces/default/pods/web/status",
            {"metadata": {"annotations": {"a": "b"}}},
        )
        assert code == 403
        assert body == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f'pods "web" is forbidden: User "{USER}" cannot patch resource '
            '"pods/status" in API group "" in the namespace "default"',
            "reason": "Forbidden",
            "details": {"name": "web", "kind": "pods"},
            "code": 403,
        }
        api.set_role(MULTUS_V4_0_2)
        code, body = await raw(api, "GET", "/api/v1/pods")
        assert (code, body["message"]) == (
            403,
            f'pods is forbidden: User "{USER}" cannot list resource "pods" in API group "" '
            "at the cluster scope",
        )
        api.set_role(MULTIHOME)
        code, body = await raw(
            api,
            "DELETE",
            "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/x",
        )
        assert code == 403
        assert body["message"] == (
            'network-attachment-definitions.k8s.cni.cncf.io "x" is forbidden: User '
            f'"{USER}" cannot delete resource "network-attachment-definitions" in API group '
            '"k8s.cni.cncf.io" in the namespace "default"'
        )
        assert body["details"] == {
            "name": "x",
            "group": "k8s.cni.cncf.io",
            "kind": "network-attachment-definitions",
        }
        # Discovery and /version are every user's, as on a real cluster.
        assert (await raw(api, "GET", "/version"))[0] == 200
        # A denied request is still counted: it reached the server.
        assert api.count("delete", "network-attachment-definitions") == 1


async def test_the_role_knob_over_http() -> None:
    async with ApiServerDouble() as api:
        async with aiohttp.ClientSession() as session:
            async with session.post(api.url + "/_double/role", json={"role": "multus-v4.0.2"}) as r:
                assert (r.status, await r.json()) == (200, {"role": "multus-v4.0.2"})
            async with session.get(api.url + "/_double/state") as r:
                assert (await r.json())["role"] == "multus"
        assert (await raw(api, "GET", "/api/v1/pods"))[0] == 403
        async with (
            aiohttp.ClientSession() as session,
            session.post(api.url + "/_double/role", json={"role": None}) as r,
        ):
            assert r.status == 200
        assert (await raw(api, "GET", "/api/v1/pods"))[0] == 200


@pytest.mark.parametrize(
    ("role", "granted"),
    [
        (
            MULTUS_V4_0_2,
            {
                "get pods",
                "update pods",
                "get pods/status",
                "update pods/status",
                "list nads",
                "watch nads",
                "get nads",
                "create events",
                "patch events",
                "update events",
            },
        ),
        (
            MULTUS_HEAD,
            {
                "get pods",
                "list pods",
                "watch pods",
                "update pods",
                "update pods/status",
                "get pods/status",
                "list pods/status",
                "watch pods/status",
                "list nads",
                "watch nads",
                "get nads",
                "create events",
                "patch events",
                "update events",
            },
        ),
        (
            MULTIHOME,
            {
                "get pods",
                "list pods",
                "watch pods",
                "patch pods/status",
                "list nads",
                "watch nads",
                "get nads",
                "create events",
            },
        ),
    ],
    ids=["multus-v4.0.2", "multus-head", "multihome"],
)
def test_each_role_grants_exactly_its_rules(role: Role, granted: set[str]) -> None:
    groups = {"pods": "", "nads": "k8s.cni.cncf.io", "events": ""}
    plural = {"nads": "network-attachment-definitions"}
    seen = set()
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
        for resource in ("pods", "pods/status", "nads", "events"):
            base, _, sub = resource.partition("/")
            if role.allows(
                verb=verb, group=groups[base], resource=plural.get(base, base), subresource=sub
            ):
                seen.add(f"{verb} {resource}")
    # Multus grants every verb on its own group; only the ones multihome cares for are listed.
    assert seen - {f"{v} nads" for v in ("create", "update", "patch", "delete")} == granted
    assert any(r is role for r in ROLES.values())


def test_wildcards_and_resource_names_match_as_rbac_does() -> None:
    role = Role(
        "r",
        (
            {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"], "resourceNames": ["web"]},
        ),
    )
    assert role.allows(verb="get", group="x.io", resource="things", subresource="status")
    assert not role.allows(verb="get", group="x.io", resource="things")
    assert role.allows(verb="delete", group="", resource="pods", name="web")
    assert not role.allows(verb="delete", group="", resource="pods", name="db")


# -- the source under each role ------------------------------------------------------


@pytest.fixture
async def api() -> AsyncIterator[ApiServerDouble]:
    async with ApiServerDouble() as double:
        yield double


async def status_of(api: ApiServerDouble, name: str) -> str | None:
    stored = api.get("pods", namespace="default", name=name)
    assert stored is not None
    return (stored["metadata"].get("annotations") or {}).get(STATUS_ANNOTATION)


async def serve_two_adds(
    api: ApiServerDouble, source: KubeSource
) -> list[Counter[tuple[str, str]]]:
    """What an ADD asks of the source (pod, NAD, status), for two pods: the requests of each."""
    counts = []
    for name in ("web-0", "web-1"):
        uid = api.get("pods", namespace="default", name=name)["metadata"]["uid"]  # type: ignore[index]
        api.reset_requests()
        found = await source.get_pod("default", name, uid=uid)
        assert found is not None
        assert await source.get_nad("default", "nad-a") is not None
        await source.set_network_status(found, '[{"name": "cluster"}]')
        counts.append(api.requests())
        assert await status_of(api, name) == '[{"name": "cluster"}]'
    return counts


@pytest.mark.parametrize(
    ("role", "first", "second"),
    [
        (
            MULTIHOME,
            {("patch", "pods/status"): 1},
            {("patch", "pods/status"): 1},
        ),
        (
            MULTUS_HEAD,
            {("patch", "pods/status"): 1, ("get", "pods"): 1, ("update", "pods/status"): 1},
            {("get", "pods"): 1, ("update", "pods/status"): 1},
        ),
        (
            MULTUS_V4_0_2,
            {("get", "pods"): 2, ("patch", "pods/status"): 1, ("update", "pods/status"): 1},
            {("get", "pods"): 2, ("update", "pods/status"): 1},
        ),
    ],
    ids=["multihome", "multus-head", "multus-v4.0.2"],
)
async def test_the_source_serves_adds_with_what_the_role_grants(
    api: ApiServerDouble,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    role: Role,
    first: dict[tuple[str, str], int],
    second: dict[tuple[str, str], int],
) -> None:
    api.set_role(role)
    for name in ("web-0", "web-1"):
        api.create(pod(name))
    api.create(nad("nad-a"))
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    caplog.set_level(logging.INFO, logger="multihome")
    # backoffMax an hour: no list retry of the forbidden pod watch within the test.
    async with KubeSource(config(kubeconfig, backoff_max=3600.0)) as source:
        assert await source.wait_ready(WAIT)
        watches = 1 if role is MULTUS_V4_0_2 else 2
        await api.until(lambda: api.open_watches == watches, timeout=WAIT)

        counts = await serve_two_adds(api, source)

        # DEL clears the status of the incarnation it belonged to, with the same requests.
        api.reset_requests()
        await source.set_network_status(pod("web-1", uid=_uid(api, "web-1")), None)
        assert await status_of(api, "web-1") is None
        clear = api.requests()
    assert counts == [Counter(first), Counter(second)]
    assert clear == Counter(second) - Counter({("get", "pods"): 1 if role is MULTUS_V4_0_2 else 0})
    fallbacks = [r.getMessage() for r in caplog.records if "PUT pods/status" in r.getMessage()]
    watchless = [r.getMessage() for r in caplog.records if "not caching it" in r.getMessage()]
    if role is MULTIHOME:
        assert fallbacks == watchless == []
        return
    [fallback] = fallbacks  # logged once, with what to grant
    assert 'cannot patch resource "pods/status"' in fallback
    assert 'grant "patch" on "pods/status"' in fallback
    if role is MULTUS_V4_0_2:
        [line] = watchless
        assert line.startswith("/api/v1/pods: not caching it: pods is forbidden")
        assert "grant list and watch on it" in line
    else:
        assert watchless == []


def _uid(api: ApiServerDouble, name: str) -> str:
    stored = api.get("pods", namespace="default", name=name)
    assert stored is not None
    return str(stored["metadata"]["uid"])


async def test_put_retries_a_conflict_and_never_writes_another_incarnation(
    api: ApiServerDouble, tmp_path: Path
) -> None:
    api.set_role(MULTUS_HEAD)
    api.create(pod("web"))
    old_uid = _uid(api, "web")
    async with KubeSource(config(api.write_kubeconfig(tmp_path / "kubeconfig"))) as source:
        await source.set_network_status(pod("web", uid=old_uid), "[]")  # learns: GET + PUT
        api.reset_requests()
        api.fail_next(code=409, verb="update", resource="pods/status")
        await source.set_network_status(pod("web", uid=old_uid), '[{"name": "a"}]')
        assert api.requests() == Counter({("get", "pods"): 2, ("update", "pods/status"): 2})
        assert await status_of(api, "web") == '[{"name": "a"}]'

        api.delete("pods", namespace="default", name="web")
        api.create(pod("web", annotations={STATUS_ANNOTATION: "[new]"}))
        api.reset_requests()
        await source.set_network_status(pod("web", uid=old_uid), None)
        assert api.requests() == Counter({("get", "pods"): 1})
        assert await status_of(api, "web") == "[new]"


async def test_a_role_without_any_status_write_fails_the_add_saying_what_to_grant(
    api: ApiServerDouble, tmp_path: Path
) -> None:
    api.set_role(Role("reader", ({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},)))
    api.create(pod("web"))
    async with KubeSource(config(api.write_kubeconfig(tmp_path / "kubeconfig"))) as source:
        with pytest.raises(CNIError) as caught:
            await source.set_network_status(pod("web", uid=_uid(api, "web")), "[]")
    assert caught.value.code == Code.IO_FAILURE
    assert caught.value.msg == (
        'failed to write network-status on pod default/web: pods "web" is forbidden: User '
        f'"{USER}" cannot update resource "pods/status" in API group "" in the namespace "default"'
    )
    assert 'grant "patch" on "pods/status"' in caught.value.details
    assert '"update" on "pods/status"' in caught.value.details


async def test_without_a_watch_the_source_warns_of_nothing(
    api: ApiServerDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The thin plugin: no node name, never started; it caches nothing, so it says nothing.
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    source = KubeSource(KubeConfig(kubeconfig=str(kubeconfig), pod_wait=0))
    await source.stop()
    assert not [r for r in caplog.records if "node name" in r.getMessage()]
    # The daemon without a node name still says what it costs.
    async with KubeSource(KubeConfig(kubeconfig=str(kubeconfig))):
        pass
    assert [r.getMessage() for r in caplog.records] == [
        "no node name configured: caching every pod of the cluster"
    ]


async def test_a_role_granted_later_is_picked_up(
    api: ApiServerDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api.set_role(MULTUS_V4_0_2)
    api.create(pod("web"))
    t = FakeTime()
    source = KubeSource(config(api.write_kubeconfig(tmp_path / "kubeconfig")))  # not started
    try:
        reflector = Reflector(
            source.client,
            path="/api/v1/pods",
            backoff=Backoff(initial=1, maximum=30),
            sleep=t.sleep,
        )
        await reflector.run(_iterations=1)
        assert reflector.forbidden is not None and reflector.settled
        assert t.slept == [30]  # the next list after backoffMax
        await reflector.run(_iterations=1)  # still forbidden: quietly
        api.set_role(MULTUS_HEAD)
        await reflector.run(_iterations=1)
    finally:
        await source.stop()
    assert reflector.forbidden is None and reflector.get("default", "web") is not None
    assert api.count("list", "pods") == 3
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("/api/v1/pods")]
    assert [line.split(":")[1] for line in lines] == [" not caching it", " listing is allowed now"]


def test_the_documented_role_is_the_one_the_tests_play() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "configuration-kube.md").read_text()
    section = doc[doc.index("## RBAC") :]
    block = section[section.index("```yaml") + len("```yaml") : section.index("```\n", 10)]
    assert yaml.safe_load(block) == MULTIHOME.manifest()
