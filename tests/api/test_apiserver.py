"""The API double answers like kube-apiserver, and its knobs do what they say.

Everything goes over HTTP, as a client under test would talk to it; the
double's own record (request log, counters) is how knobs are checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from multihome.testing.apiserver import ApiServerDouble, run_in_thread, write_kubeconfig

PODS = "/api/v1/namespaces/default/pods"
NADS = "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions"
MERGE = {"Content-Type": "application/merge-patch+json"}


def pod(
    name: str, *, node: str = "node1", namespace: str = "default", **meta: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "pause"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": spec,
    }


def nad(name: str, config: Any = '{"cniVersion": "1.0.0", "type": "macvlan"}') -> dict[str, Any]:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name},
        "spec": {"config": config},
    }


@pytest.fixture
async def api() -> AsyncIterator[ApiServerDouble]:
    async with ApiServerDouble() as double:
        yield double


@pytest.fixture
async def http(api: ApiServerDouble) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=api.url) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, path: str, body: Any = None, **kw: Any
) -> tuple[int, Any]:
    data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
    async with http.request(method, path, data=data, **kw) as resp:
        return resp.status, await resp.json()


class Watch:
    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def line(self) -> bytes:
        async with asyncio.timeout(10):  # a hang fails the test instead of the run
            return await self.resp.content.readline()

    async def next(self) -> dict[str, Any]:
        line = await self.line()
        assert line, "the watch ended"
        event: dict[str, Any] = json.loads(line)
        return event


@contextlib.asynccontextmanager
async def watch(http: aiohttp.ClientSession, path: str, **params: str) -> AsyncIterator[Watch]:
    async with http.get(path, params={"watch": "true", **params}) as resp:
        assert resp.status == 200
        yield Watch(resp)


# -- objects, resourceVersions and the real server's errors ------------------


async def test_pod_crud_stamps_metadata_and_counts_resource_versions(http: aiohttp.ClientSession):
    code, created = await call(http, "POST", PODS, {**pod("a"), "status": {"podIP": "10.0.0.9"}})
    assert code == 201
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert created["status"] == {"phase": "Pending"}  # as the real server resets it

    code, got = await call(http, "GET", f"{PODS}/a")
    assert (code, got) == (200, created)

    code, listed = await call(http, "GET", PODS)
    assert listed["kind"] == "PodList"
    assert int(listed["metadata"]["resourceVersion"]) >= int(meta["resourceVersion"])
    assert [p["metadata"]["name"] for p in listed["items"]] == ["a"]
    assert "kind" not in listed["items"][0]  # built-in list items carry no kind

    code, deleted = await call(http, "DELETE", f"{PODS}/a")
    assert code == 200 and deleted["metadata"]["uid"] == meta["uid"]
    assert int(deleted["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    code, _ = await call(http, "GET", f"{PODS}/a")
    assert code == 404


async def test_not_found_bodies_are_real_status_objects(http: aiohttp.ClientSession):
    code, body = await call(http, "GET", f"{PODS}/x")
    assert code == 404
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "x" not found',
        "reason": "NotFound",
        "details": {"name": "x", "kind": "pods"},
        "code": 404,
    }
    code, body = await call(http, "DELETE", f"{NADS}/x")
    assert code == 404
    assert body["message"] == 'network-attachment-definitions.k8s.cni.cncf.io "x" not found'
    assert body["details"] == {
        "name": "x",
        "group": "k8s.cni.cncf.io",
        "kind": "network-attachment-definitions",
    }
    code, body = await call(http, "GET", "/api/v1/namespaces/default/widgets")
    assert (code, body["reason"]) == (404, "NotFound")


async def test_update_with_a_stale_resource_version_conflicts(http: aiohttp.ClientSession):
    _, created = await call(http, "POST", PODS, pod("a"))
    fresh = {**created, "metadata": {**created["metadata"], "labels": {"x": "1"}}}
    code, updated = await call(http, "PUT", f"{PODS}/a", fresh)
    assert code == 200
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])

    code, body = await call(http, "PUT", f"{PODS}/a", fresh)  # the old version again
    assert code == 409
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on pods "a": the object has been modified; please apply '
        "your changes to the latest version and try again"
    )


async def test_create_of_an_existing_object_is_already_exists(http: aiohttp.ClientSession):
    await call(http, "POST", NADS, nad("n"))
    code, body = await call(http, "POST", NADS, nad("n"))
    assert (code, body["reason"]) == (409, "AlreadyExists")
    assert body["message"] == 'network-attachment-definitions.k8s.cni.cncf.io "n" already exists'


async def test_nad_update_needs_a_resource_version_and_bumps_generation_on_spec(
    http: aiohttp.ClientSession,
):
    _, created = await call(http, "POST", NADS, nad("n"))
    code, body = await call(http, "PUT", f"{NADS}/n", nad("n", config="{}"))
    assert (code, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.resourceVersion"

    relabelled = {**created, "metadata": {**created["metadata"], "labels": {"a": "b"}}}
    _, relabelled = await call(http, "PUT", f"{NADS}/n", relabelled)
    assert relabelled["metadata"]["generation"] == 1
    code, respecced = await call(
        http, "PATCH", f"{NADS}/n", {"spec": {"config": "{}"}}, headers=MERGE
    )
    assert code == 200 and respecced["metadata"]["generation"] == 2


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (pod("Not_A_Name"), 422, "metadata.name"),
        ({**pod("a"), "metadata": {}}, 422, "metadata.name"),
        (pod("a", annotations={"k": 1}), 400, None),
        ("{not json", 400, None),
    ],
)
async def test_invalid_pod_bodies(http: aiohttp.ClientSession, body: Any, code: int, field: str):
    status, answer = await call(http, "POST", PODS, body)
    assert status == code
    assert answer["kind"] == "Status" and answer["code"] == code
    if field:
        assert answer["details"]["causes"][0]["field"] == field


async def test_nad_config_must_be_a_string(http: aiohttp.ClientSession):
    code, body = await call(http, "POST", NADS, nad("n", config={"type": "macvlan"}))
    assert code == 422
    assert body["message"].startswith(
        'NetworkAttachmentDefinition.k8s.cni.cncf.io "n" is invalid: spec.config'
    )


async def test_delete_preconditions_and_nad_delete_status(http: aiohttp.ClientSession):
    _, created = await call(http, "POST", NADS, nad("n"))
    code, body = await call(http, "DELETE", f"{NADS}/n", {"preconditions": {"uid": "not-the-uid"}})
    assert (code, body["reason"]) == (409, "Conflict")
    code, body = await call(http, "DELETE", f"{NADS}/n")
    assert (code, body["status"]) == (200, "Success")
    assert body["details"]["uid"] == created["metadata"]["uid"]


# -- patches and the status subresource --------------------------------------


async def test_patch_content_types(http: aiohttp.ClientSession):
    await call(http, "POST", PODS, pod("a", annotations={"keep": "1", "drop": "1"}))
    code, patched = await call(
        http,
        "PATCH",
        f"{PODS}/a",
        {"metadata": {"annotations": {"new": "2", "drop": None}}},
        headers=MERGE,
    )
    assert code == 200
    assert patched["metadata"]["annotations"] == {"keep": "1", "new": "2"}

    strategic = {"Content-Type": "application/strategic-merge-patch+json"}
    code, patched = await call(
        http,
        "PATCH",
        f"{PODS}/a",
        {"metadata": {"annotations": {"$patch": "replace", "only": "3"}}},
        headers=strategic,
    )
    assert patched["metadata"]["annotations"] == {"only": "3"}

    json_patch = {"Content-Type": "application/json-patch+json"}
    code, patched = await call(
        http,
        "PATCH",
        f"{PODS}/a",
        [{"op": "add", "path": "/metadata/labels", "value": {"app": "x"}}],
        headers=json_patch,
    )
    assert patched["metadata"]["labels"] == {"app": "x"}
    code, body = await call(
        http,
        "PATCH",
        f"{PODS}/a",
        [{"op": "test", "path": "/metadata/labels/app", "value": "y"}],
        headers=json_patch,
    )
    assert (code, body["reason"]) == (422, "Invalid")

    code, body = await call(
        http, "PATCH", f"{PODS}/a", "{}", headers={"Content-Type": "application/apply-patch+yaml"}
    )
    assert (code, body["reason"]) == (415, "UnsupportedMediaType")


async def test_a_patch_that_changes_nothing_keeps_the_resource_version(
    api: ApiServerDouble, http: aiohttp.ClientSession
):
    await call(http, "POST", PODS, pod("a"))
    patch = {"metadata": {"annotations": {"k": "v"}}}
    _, first = await call(http, "PATCH", f"{PODS}/a", patch, headers=MERGE)
    _, second = await call(http, "PATCH", f"{PODS}/a", patch, headers=MERGE)
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert api.resource_version == int(first["metadata"]["resourceVersion"])


async def test_patch_carrying_a_stale_resource_version_conflicts(http: aiohttp.ClientSession):
    _, created = await call(http, "POST", PODS, pod("a"))
    await call(http, "PATCH", f"{PODS}/a", {"metadata": {"labels": {"a": "1"}}}, headers=MERGE)
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}}
    code, body = await call(http, "PATCH", f"{PODS}/a", stale, headers=MERGE)
    assert (code, body["reason"]) == (409, "Conflict")


async def test_status_subresource_writes_status_and_annotations_but_not_spec(
    http: aiohttp.ClientSession,
):
    await call(http, "POST", PODS, pod("a"))
    patch = {
        "metadata": {"annotations": {"k8s.v1.cni.cncf.io/network-status": "[]"}},
        "spec": {"nodeName": "elsewhere"},
        "status": {"podIP": "10.1.1.1"},
    }
    code, patched = await call(http, "PATCH", f"{PODS}/a/status", patch, headers=MERGE)
    assert code == 200
    assert patched["metadata"]["annotations"] == {"k8s.v1.cni.cncf.io/network-status": "[]"}
    assert patched["status"]["podIP"] == "10.1.1.1"
    assert patched["spec"]["nodeName"] == "node1"

    code, got = await call(http, "GET", f"{PODS}/a/status")
    assert got == patched
    # The main resource, in turn, cannot change status.
    changed = {**got, "status": {"podIP": "10.9.9.9"}}
    _, updated = await call(http, "PUT", f"{PODS}/a", changed)
    assert updated["status"]["podIP"] == "10.1.1.1"


# -- list and watch ----------------------------------------------------------


async def test_list_by_node_name_field_selector(http: aiohttp.ClientSession):
    for name, node in (("a", "node1"), ("b", "node2"), ("c", "node1")):
        await call(http, "POST", PODS, pod(name, node=node))
    await call(http, "POST", "/api/v1/namespaces/other/pods", pod("d", namespace="other"))
    code, listed = await call(http, "GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode1")
    assert code == 200
    assert [p["metadata"]["name"] for p in listed["items"]] == ["a", "c", "d"]
    code, listed = await call(
        http, "GET", f"{PODS}?fieldSelector=spec.nodeName!%3Dnode1,metadata.name%3Db"
    )
    assert [p["metadata"]["name"] for p in listed["items"]] == ["b"]
    code, body = await call(http, "GET", f"{PODS}?fieldSelector=spec.color%3Dred")
    assert (code, body["message"]) == (400, "field label not supported: spec.color")


async def test_list_by_label_selector_and_in_pages(http: aiohttp.ClientSession):
    for i in range(5):
        await call(http, "POST", PODS, pod(f"p{i}", labels={"tier": "db" if i % 2 else "web"}))
    _, listed = await call(http, "GET", PODS, params={"labelSelector": "tier in (db),!absent"})
    assert [p["metadata"]["name"] for p in listed["items"]] == ["p1", "p3"]

    names: list[str] = []
    params = {"limit": "2"}
    while True:
        _, page = await call(http, "GET", PODS, params=params)
        names += [p["metadata"]["name"] for p in page["items"]]
        if not page["metadata"].get("continue"):
            break
        params = {"limit": "2", "continue": page["metadata"]["continue"]}
    assert names == [f"p{i}" for i in range(5)]


async def test_node_watch_sees_pods_enter_change_and_leave_its_selector(
    http: aiohttp.ClientSession,
):
    _, listed = await call(http, "GET", "/api/v1/pods")
    start = listed["metadata"]["resourceVersion"]
    async with watch(
        http, "/api/v1/pods", resourceVersion=start, fieldSelector="spec.nodeName=node1"
    ) as w:
        await call(http, "POST", PODS, pod("other-node", node="node2"))
        _, unbound = await call(http, "POST", PODS, pod("a", node=""))
        await call(http, "PATCH", f"{PODS}/a", {"spec": {"nodeName": "node1"}}, headers=MERGE)
        added = await w.next()
        assert added["type"] == "ADDED"  # bound to this node: enters the selection
        assert added["object"]["metadata"]["uid"] == unbound["metadata"]["uid"]
        assert added["object"]["kind"] == "Pod"

        await call(http, "PATCH", f"{PODS}/a", {"metadata": {"labels": {"x": "y"}}}, headers=MERGE)
        modified = await w.next()
        assert modified["type"] == "MODIFIED"
        assert modified["object"]["metadata"]["labels"] == {"x": "y"}

        _, deleted = await call(http, "DELETE", f"{PODS}/a")
        gone = await w.next()
        assert gone["type"] == "DELETED"
        assert (
            gone["object"]["metadata"]["resourceVersion"] == deleted["metadata"]["resourceVersion"]
        )


async def test_watch_resumes_after_a_resource_version(http: aiohttp.ClientSession):
    versions = []
    for name in ("a", "b", "c"):
        _, created = await call(http, "POST", NADS, nad(name))
        versions.append(created["metadata"]["resourceVersion"])
    async with watch(http, NADS, resourceVersion=versions[0]) as w:
        events = [await w.next(), await w.next()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"),
        ("ADDED", "c"),
    ]


async def test_watch_without_resource_version_starts_with_every_object(
    http: aiohttp.ClientSession,
):
    await call(http, "POST", NADS, nad("a"))
    await call(
        http,
        "POST",
        "/apis/k8s.cni.cncf.io/v1/namespaces/other/network-attachment-definitions",
        nad("b"),
    )
    async with watch(http, "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions") as w:
        first = [await w.next(), await w.next()]
    assert {e["object"]["metadata"]["name"] for e in first} == {"a", "b"}
    assert {e["type"] for e in first} == {"ADDED"}


async def test_watch_from_before_compaction_gets_an_expired_error_event(
    api: ApiServerDouble, http: aiohttp.ClientSession
):
    _, created = await call(http, "POST", NADS, nad("a"))
    await call(http, "POST", NADS, nad("b"))
    horizon = api.compact()
    old = created["metadata"]["resourceVersion"]
    async with watch(http, NADS, resourceVersion=old) as w:
        event = await w.next()
        assert await w.line() == b""  # and the stream ends
    assert event == {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"too old resource version: {old} ({horizon})",
            "reason": "Expired",
            "code": 410,
        },
    }


async def test_history_window_is_bounded():
    async with (
        ApiServerDouble(history_size=2) as api,
        aiohttp.ClientSession(base_url=api.url) as http,
    ):
        versions = []
        for i in range(4):
            _, created = await call(http, "POST", NADS, nad(f"n{i}"))
            versions.append(created["metadata"]["resourceVersion"])
        for i in range(3):  # other kinds' changes do not push NADs out of the window
            event = {"metadata": {"name": f"e{i}"}, "involvedObject": {"kind": "Pod"}}
            await call(http, "POST", "/api/v1/namespaces/default/events", event)
        async with watch(http, NADS, resourceVersion=versions[0]) as w:
            assert (await w.next())["type"] == "ERROR"
        async with watch(http, NADS, resourceVersion=versions[1]) as w:
            names = [(await w.next())["object"]["metadata"]["name"] for _ in range(2)]
        assert names == ["n2", "n3"]


async def test_watch_from_the_future_times_out_like_the_real_server(
    http: aiohttp.ClientSession,
):
    code, body = await call(http, "GET", NADS, params={"watch": "1", "resourceVersion": "999"})
    assert (code, body["reason"]) == (504, "Timeout")


async def test_closing_watches_ends_their_streams(
    api: ApiServerDouble, http: aiohttp.ClientSession
):
    async with watch(http, PODS, resourceVersion="0") as w1, watch(http, NADS) as w2:
        assert api.open_watches == 2
        assert api.close_watches() == 2
        assert await w1.line() == b""
        assert await w2.line() == b""
    await api.until(lambda: api.open_watches == 0)


async def test_a_client_hanging_up_unregisters_its_watch(
    api: ApiServerDouble, http: aiohttp.ClientSession
):
    async with watch(http, PODS):
        assert api.open_watches == 1
    await api.until(lambda: api.open_watches == 0)


async def test_bookmarks_on_request(api: ApiServerDouble, http: aiohttp.ClientSession):
    await call(http, "POST", PODS, pod("a"))
    rv = str(api.resource_version)
    async with watch(http, PODS, resourceVersion=rv, allowWatchBookmarks="true") as w:
        async with watch(http, NADS, resourceVersion=rv):
            # Only the watch that allowed bookmarks gets one.
            assert api.send_bookmarks() == 1
        event = await w.next()
    assert event == {
        "type": "BOOKMARK",
        "object": {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(api.resource_version)},
        },
    }


# -- auth and knobs ----------------------------------------------------------


async def test_bearer_token_auth_and_rotation():
    async with (
        ApiServerDouble(tokens=["one"]) as api,
        aiohttp.ClientSession(base_url=api.url) as http,
    ):
        code, body = await call(http, "GET", PODS)
        assert (code, body["reason"], body["message"]) == (401, "Unauthorized", "Unauthorized")
        code, _ = await call(http, "GET", PODS, headers={"Authorization": "Bearer two"})
        assert code == 401
        code, _ = await call(http, "GET", PODS, headers={"Authorization": "Bearer one"})
        assert code == 200

        api.set_tokens("two")
        code, _ = await call(http, "GET", PODS, headers={"Authorization": "Bearer one"})
        assert code == 401
        code, _ = await call(http, "GET", PODS, headers={"Authorization": "Bearer two"})
        assert code == 200
        assert [r.code for r in api.request_log()] == [401, 401, 200, 401, 200]


async def test_latency_shows_in_the_record(api: ApiServerDouble, http: aiohttp.ClientSession):
    await call(http, "GET", PODS)
    api.set_latency(7)
    await call(http, "GET", f"{PODS}/x")
    assert [(r.verb, r.delay_ms) for r in api.request_log()] == [("list", 0.0), ("get", 7.0)]


async def test_fail_next_requests(api: ApiServerDouble, http: aiohttp.ClientSession):
    await call(http, "POST", PODS, pod("a"))
    api.fail_next(2, code=503)
    for _ in range(2):
        async with http.get(PODS) as resp:
            body = await resp.json()
            assert resp.status == 503 and resp.headers["Retry-After"] == "1"
            assert body["reason"] == "ServiceUnavailable"
    code, _ = await call(http, "GET", PODS)
    assert code == 200

    api.fail_next(code=500, verb="patch", resource="pods/status")
    code, _ = await call(http, "GET", f"{PODS}/a")
    assert code == 200
    patch = {"metadata": {"annotations": {"a": "b"}}}
    code, body = await call(http, "PATCH", f"{PODS}/a/status", patch, headers=MERGE)
    assert (code, body["reason"]) == (500, "InternalError")
    code, _ = await call(http, "PATCH", f"{PODS}/a/status", patch, headers=MERGE)
    assert code == 200


async def test_request_counter_by_audit_verb_and_resource(
    api: ApiServerDouble, http: aiohttp.ClientSession
):
    await call(http, "POST", PODS, pod("a"))
    await call(http, "GET", f"{PODS}/a")
    await call(http, "GET", "/api/v1/pods")
    await call(http, "PUT", f"{PODS}/a", pod("a"))
    await call(http, "PATCH", f"{PODS}/a/status", {}, headers=MERGE)
    await call(http, "POST", NADS, nad("n"))
    await call(http, "DELETE", f"{NADS}/n")
    async with watch(http, PODS):
        pass
    await call(http, "GET", "/version")
    assert api.requests() == Counter(
        {
            ("create", "pods"): 1,
            ("get", "pods"): 1,
            ("list", "pods"): 1,
            ("update", "pods"): 1,
            ("patch", "pods/status"): 1,
            ("create", "network-attachment-definitions"): 1,
            ("delete", "network-attachment-definitions"): 1,
            ("watch", "pods"): 1,
            ("get", "/version"): 1,
        }
    )
    assert api.count(resource="pods") == 5  # create, get, list, update, watch
    _, over_http = await call(http, "GET", "/_double/requests")
    assert over_http["total"] == 9 and over_http["counts"]["patch pods/status"] == 1
    api.reset_requests()
    assert api.count() == 0


async def test_knobs_over_http(api: ApiServerDouble, http: aiohttp.ClientSession):
    await call(http, "POST", "/_double/latency", {"ms": 3})
    await call(http, "POST", "/_double/fail", {"count": 1, "code": 429})
    code, _ = await call(http, "GET", PODS)
    assert code == 429
    assert api.request_log()[-1].delay_ms == 3

    async with watch(http, PODS) as w:
        code, closed = await call(http, "POST", "/_double/close-watches")
        assert closed == {"closed": 1}
        assert await w.line() == b""

    code, compacted = await call(http, "POST", "/_double/compact")
    assert compacted == {"horizon": api.resource_version}

    await call(http, "POST", "/_double/tokens", {"tokens": ["t"]})
    code, _ = await call(http, "GET", PODS)
    assert code == 401
    code, state = await call(http, "GET", "/_double/state")
    assert state["authentication"] is True and state["latencyMs"] == 3

    await call(http, "DELETE", "/_double/requests")
    assert api.count() == 0
    code, body = await call(http, "POST", "/_double/latency", {"milliseconds": 3})
    assert code == 400 and "failed to set knob" in body["error"]


# -- events, discovery, Python API -------------------------------------------


async def test_events_of_both_apis(api: ApiServerDouble, http: aiohttp.ClientSession):
    core = {
        "metadata": {"name": "a.1"},
        "involvedObject": {"kind": "Pod", "name": "a"},
        "reason": "AddedInterface",
        "message": "Add net1 [10.1.1.2/24] from default/nad-a",
        "type": "Normal",
    }
    code, _ = await call(http, "POST", "/api/v1/namespaces/default/events", core)
    assert code == 201
    new = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"generateName": "a."},
        "regarding": {"kind": "Pod", "name": "a"},
        "reason": "Failed",
        "note": "bad MAC",
        "type": "Warning",
    }
    code, created = await call(
        http, "POST", "/apis/events.k8s.io/v1/namespaces/default/events", new
    )
    assert code == 201 and created["metadata"]["name"].startswith("a.")
    assert [e["reason"] for e in api.events()] == ["AddedInterface", "Failed"]
    _, listed = await call(http, "GET", "/api/v1/events")
    assert [e["message"] for e in listed["items"]] == [core["message"]]


async def test_discovery_documents(http: aiohttp.ClientSession):
    _, version = await call(http, "GET", "/version")
    assert version["major"] == "1"
    _, apis = await call(http, "GET", "/api")
    assert apis["versions"] == ["v1"]
    _, groups = await call(http, "GET", "/apis")
    assert {g["name"] for g in groups["groups"]} == {
        "k8s.cni.cncf.io",
        "events.k8s.io",
        "resource.k8s.io",
    }
    _, core = await call(http, "GET", "/api/v1")
    assert {"pods", "pods/status", "events"} <= {r["name"] for r in core["resources"]}
    _, nads = await call(http, "GET", "/apis/k8s.cni.cncf.io/v1")
    assert nads["resources"][0]["kind"] == "NetworkAttachmentDefinition"
    _, dra = await call(http, "GET", "/apis/resource.k8s.io/v1")
    scoped = {r["name"]: r["namespaced"] for r in dra["resources"]}
    assert scoped == {
        "resourceclaims": True,
        "resourceclaims/status": True,
        "resourceslices": False,
    }


async def test_python_api_seeds_objects_that_clients_see(
    api: ApiServerDouble, http: aiohttp.ClientSession
):
    created = api.create({**pod("a"), "status": {"podIP": "10.0.0.1"}})
    assert created["status"] == {"podIP": "10.0.0.1"}  # seeding keeps the status
    async with watch(http, PODS, resourceVersion=created["metadata"]["resourceVersion"]) as w:
        api.update({**created, "status": {"podIP": "10.0.0.2"}})
        event = await w.next()
        assert (event["type"], event["object"]["status"]["podIP"]) == ("MODIFIED", "10.0.0.2")
        api.delete("pods", namespace="default", name="a")
        assert (await w.next())["type"] == "DELETED"
    assert api.get("pods", namespace="default", name="a") is None
    created["metadata"]["name"] = "mutated"  # a copy: the store is untouched
    assert api.objects("pods") == []


# -- running it: thread, process, state, kubeconfig --------------------------


def test_run_in_thread_serves_synchronous_clients():
    with run_in_thread(tokens=["t"]) as api:
        api.create(nad("n"))
        request = urllib.request.Request(f"{api.url}{NADS}", headers={"Authorization": "Bearer t"})
        with urllib.request.urlopen(request) as resp:
            listed = json.load(resp)
        assert [n["metadata"]["name"] for n in listed["items"]] == ["n"]
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(f"{api.url}{NADS}")
        assert failed.value.code == 401
        failed.value.close()
        api.wait(lambda: api.count("list") == 2)
        assert api.requests()[("list", "network-attachment-definitions")] == 2


async def test_state_dir_loads_manifests_and_saves_on_stop(tmp_path: Path):
    manifests = [
        pod("a"),
        nad("n"),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
    ]
    (tmp_path / "objects.yaml").write_text(yaml.safe_dump_all(manifests))
    async with ApiServerDouble(state_dir=tmp_path) as api:
        assert [p["metadata"]["name"] for p in api.objects("pods")] == ["a"]
        uid = api.get("network-attachment-definitions", namespace="default", name="n")["metadata"][
            "uid"
        ]
        api.create(nad("m"))
        rv = api.resource_version
    saved = json.loads((tmp_path / "apiserver-state.json").read_text())
    assert len(saved["items"]) == 3
    async with ApiServerDouble(state_dir=tmp_path, save_state=False) as api:
        assert api.resource_version == rv
        again = api.get("network-attachment-definitions", namespace="default", name="n")
        assert again["metadata"]["uid"] == uid
        assert api.get("network-attachment-definitions", namespace="default", name="m")


def test_write_kubeconfig_is_private_and_points_at_the_double(tmp_path: Path):
    path = write_kubeconfig(tmp_path / "kube" / "config", url="http://127.0.0.1:1", token="t")
    config = yaml.safe_load(path.read_text())
    assert config["clusters"][0]["cluster"]["server"] == "http://127.0.0.1:1"
    assert config["users"][0]["user"] == {"token": "t"}
    assert config["current-context"] == "double"
    assert path.stat().st_mode & 0o777 == 0o600


def test_runs_as_a_process(tmp_path: Path):
    kubeconfig = tmp_path / "kubeconfig"
    command = [sys.executable, "-m", "multihome.testing.apiserver", "--token", "t"]
    command += ["--kubeconfig", str(kubeconfig), "--state", str(tmp_path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            request = urllib.request.Request(
                f"{url}{NADS}",
                data=json.dumps(nad("n")).encode(),
                method="POST",
                headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request) as resp:
                assert resp.status == 201
            assert yaml.safe_load(kubeconfig.read_text())["users"][0]["user"] == {"token": "t"}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert proc.returncode == 0
    saved = json.loads((tmp_path / "apiserver-state.json").read_text())
    assert [o["metadata"]["name"] for o in saved["items"]] == ["n"]
