"""The admission webhook over real TLS, fed AdmissionReviews as the API server sends them.

The NADs come from the API double through the webhook's watch cache; every
test counts the double's requests: admission requests never cause a LIST
or a GET.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from multihome.doctor.webhook import Validator, reload_certificates, serve, tls_context
from multihome.testing.apiserver import ApiServerDouble
from multihome.testing.tls import self_signed

TOKEN = "w3bh00k"
WAIT = 10.0
NAD_KIND = {"group": "k8s.cni.cncf.io", "version": "v1", "kind": "NetworkAttachmentDefinition"}
NAD_RESOURCE = {
    "group": "k8s.cni.cncf.io",
    "version": "v1",
    "resource": "network-attachment-definitions",
}
POD_KIND = {"group": "", "version": "v1", "kind": "Pod"}
POD_RESOURCE = {"group": "", "version": "v1", "resource": "pods"}


def nad(name: str, config: dict[str, Any], **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"config": json.dumps(config)},
    }


LAN = nad(
    "lan",
    {
        "cniVersion": "1.0.0",
        "name": "lan",
        "plugins": [
            {"type": "macvlan", "master": "eth1", "ipam": {"type": "static"}},
            {"type": "tuning", "capabilities": {"mac": True}},
        ],
    },
)
EVIL = nad("evil", {"cniVersion": "1.0.0", "type": "../../bin/sh"})


def pod(networks: str) -> dict[str, Any]:
    # As the API server sends a pod of a Deployment: generateName, no name yet.
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-5d8c7b9f4-",
            "namespace": "default",
            "annotations": {"k8s.v1.cni.cncf.io/networks": networks},
        },
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
    }


def review(
    kind: dict[str, str],
    resource: dict[str, str],
    obj: dict[str, Any],
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """An AdmissionReview as kube-apiserver POSTs it (admission.k8s.io/v1)."""
    meta = obj["metadata"]
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": kind,
            "resource": resource,
            "requestKind": kind,
            "requestResource": resource,
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
            "object": obj,
            "oldObject": old,
            "dryRun": dry_run,
            "options": {
                "apiVersion": "meta.k8s.io/v1",
                "kind": "CreateOptions" if operation == "CREATE" else "UpdateOptions",
            },
        },
    }


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl CLI."""
    where = tmp_path_factory.mktemp("tls")
    return self_signed(
        where, common_name="multihome-webhook", alt_names="IP:127.0.0.1,DNS:localhost"
    )


@dataclass
class Webhook:
    url: str
    validator: Validator
    session: aiohttp.ClientSession
    api: ApiServerDouble

    async def post(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self.session.post(f"{self.url}/validate", json=body) as response:
            assert response.status == 200, await response.text()
            answer: dict[str, Any] = await response.json()
        assert answer["apiVersion"] == "admission.k8s.io/v1"
        assert answer["kind"] == "AdmissionReview"
        assert answer["response"]["uid"] == body["request"]["uid"]
        return answer["response"]

    async def get(self, path: str) -> str:
        async with self.session.get(f"{self.url}{path}") as response:
            assert response.status == 200
            return await response.text()


@pytest.fixture
async def webhook(certificate: tuple[Path, Path], tmp_path: Path) -> AsyncIterator[Webhook]:
    cert, key = certificate
    async with ApiServerDouble(tokens=[TOKEN]) as api:
        api.create(LAN)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        stop = asyncio.Event()
        up: asyncio.Future[tuple[int, Validator]] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            serve(
                cert=str(cert),
                key=str(key),
                port=0,
                address="127.0.0.1",
                kubeconfig=str(kubeconfig),
                started=lambda port, validator: up.set_result((port, validator)),
                stop=stop,
            )
        )
        port, validator = await asyncio.wait_for(up, WAIT)
        context = ssl.create_default_context(cafile=str(cert))  # verifies name and chain
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
            yield Webhook(f"https://127.0.0.1:{port}", validator, session, api)
        stop.set()
        assert await asyncio.wait_for(task, WAIT) == 0


async def warm(hook: Webhook) -> None:
    assert hook.validator.nads is not None
    await asyncio.wait_for(hook.validator.nads.synced.wait(), WAIT)
    await hook.api.until(lambda: hook.api.open_watches == 1, timeout=WAIT)
    hook.api.reset_requests()


async def test_a_nad_that_would_run_any_binary_is_denied_with_its_finding(
    webhook: Webhook,
) -> None:
    answer = await webhook.post(review(NAD_KIND, NAD_RESOURCE, EVIL))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403
    message = answer["status"]["message"]
    assert message.startswith("multihome: the NetworkAttachmentDefinition has an error: ")
    assert "[plugin-type-invalid] nad[default/evil].spec.config.type:" in message
    assert "(hint: write the plugin binary's file name only" in message
    assert "warnings" not in answer

    answer = await webhook.post(review(NAD_KIND, NAD_RESOURCE, LAN))
    assert answer == {"uid": answer["uid"], "allowed": True}


async def test_update_denies_new_errors_only(webhook: Webhook) -> None:
    relabelled = {**EVIL, "metadata": {**EVIL["metadata"], "labels": {"team": "net"}}}
    answer = await webhook.post(
        review(NAD_KIND, NAD_RESOURCE, relabelled, operation="UPDATE", old=EVIL)
    )
    assert answer["allowed"] is True
    [warning] = answer["warnings"]
    assert warning.startswith("multihome: [plugin-type-invalid] nad[default/evil].spec.config")

    address = {"address": "10.1.1.5/24", "gateway": "10.2.0.1"}
    ipam = {"type": "static", "addresses": [address]}
    broken = nad("lan", {"cniVersion": "1.0.0", "type": "macvlan", "ipam": ipam})
    answer = await webhook.post(review(NAD_KIND, NAD_RESOURCE, broken, operation="UPDATE", old=LAN))
    assert answer["allowed"] is False
    assert "[gateway-outside-subnet]" in answer["status"]["message"]


async def test_pods_are_checked_against_the_cached_nads_without_a_request_each(
    webhook: Webhook,
) -> None:
    await warm(webhook)
    api = webhook.api

    multicast = pod('[{"name": "lan", "mac": "f1:fd:59:0b:bd:2b"}]')
    answer = await webhook.post(review(POD_KIND, POD_RESOURCE, multicast, dry_run=True))
    assert answer["allowed"] is False
    assert "[mac-multicast] networks[0].mac:" in answer["status"]["message"]
    assert "02:fd:59:0b:bd:2b" in answer["status"]["message"]

    # The chain declares no "ips" capability: allowed, and kubectl prints why it may not work.
    asks_ip = pod('[{"name": "lan", "ips": ["10.1.1.5/24"], "mac": "02:00:00:00:00:05"}]')
    answer = await webhook.post(review(POD_KIND, POD_RESOURCE, asks_ip))
    assert answer["allowed"] is True
    assert [w.split("]")[0] for w in answer["warnings"]] == ["multihome: [capability-missing"]

    answer = await webhook.post(review(POD_KIND, POD_RESOURCE, pod("nowhere")))
    assert answer["allowed"] is False
    assert "[nad-not-found] networks[0]:" in answer["status"]["message"]

    # A NAD and a pod applied together (one kubectl apply): the pod's admission waits
    # for the NAD to arrive by the watch, not by a request.
    api.create(nad("fresh", {"cniVersion": "1.0.0", "type": "bridge"}))
    answer = await webhook.post(review(POD_KIND, POD_RESOURCE, pod("fresh")))
    assert answer["allowed"] is True, answer

    assert api.count("list") == 0
    assert api.count("get") == 0


async def test_health_and_metrics(webhook: Webhook) -> None:
    await warm(webhook)
    await webhook.post(review(NAD_KIND, NAD_RESOURCE, EVIL))
    await webhook.post(review(POD_KIND, POD_RESOURCE, pod("lan")))
    assert json.loads(await webhook.get("/healthz")) == {"ok": True, "nadCacheSynced": True}
    metrics = await webhook.get("/metrics")
    assert (
        'multihome_webhook_requests_total{kind="NetworkAttachmentDefinition",'
        'operation="CREATE",result="denied"} 1.0'
    ) in metrics
    assert (
        'multihome_webhook_requests_total{kind="Pod",operation="CREATE",result="allowed"} 1.0'
    ) in metrics
    assert (
        'multihome_webhook_denials_total{code="plugin-type-invalid",'
        'kind="NetworkAttachmentDefinition"} 1.0'
    ) in metrics
    assert 'multihome_webhook_request_duration_seconds_count{kind="Pod"} 1.0' in metrics
    assert "multihome_webhook_nads_cached 1.0" in metrics

    # What Prometheus reads (prometheus-client's parser, an independent implementation).
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    assert {name: f.type for name, f in families.items()} == {
        "multihome_webhook_requests": "counter",
        "multihome_webhook_denials": "counter",
        "multihome_webhook_request_duration_seconds": "histogram",
        "multihome_webhook_nads_cached": "gauge",
        "multihome_webhook_nad_cache_synced": "gauge",
    }
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families.values()
        for s in family.samples
    }
    allowed = (("kind", "Pod"), ("operation", "CREATE"), ("result", "allowed"))
    assert samples["multihome_webhook_requests_total", allowed] == 1
    buckets = [
        (dict(labels)["le"], value)
        for (name, labels), value in samples.items()
        if name == "multihome_webhook_request_duration_seconds_bucket" and ("kind", "Pod") in labels
    ]
    assert [le for le, _ in buckets][-2:] == ["1.0", "+Inf"]
    counts = [value for _, value in buckets]
    assert counts == sorted(counts) and counts[-1] == 1
    assert samples["multihome_webhook_nad_cache_synced", ()] == 1


async def test_a_malformed_review_is_a_400(webhook: Webhook) -> None:
    async with webhook.session.post(f"{webhook.url}/validate", data=b"{}") as response:
        assert response.status == 400
        assert "AdmissionReview" in await response.text()


def test_a_cold_cache_checks_what_it_can_and_says_so() -> None:
    validator = Validator()  # no cache at all: as cold as it gets
    request = review(POD_KIND, POD_RESOURCE, pod("lan"))["request"]
    allowed, errors, warnings = validator.review(request)
    assert allowed and not errors
    [warning] = warnings
    assert warning.code == "nad-cache-cold"
    assert "networks[0]" in warning.message

    request = review(POD_KIND, POD_RESOURCE, pod('[{"name": "lan", "mac": "ff:ff:ff:ff:ff:ff"}]'))
    allowed, errors, _ = validator.review(request["request"])
    assert not allowed
    assert [e.code for e in errors] == ["mac-broadcast"]


def make_certificate(where: Path, name: str) -> tuple[Path, Path]:
    cert, key = where / f"{name}.crt", where / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def served_certificate(server_context: ssl.SSLContext) -> bytes:
    """The certificate a TLS handshake with ``server_context`` presents (in memory, DER)."""
    client_context = ssl.create_default_context()
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, to_server)
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        done = 0
        for end in (client, server):
            try:
                end.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        server_in.write(to_server.read())
        to_client.write(server_out.read())
        if done == 2:
            break
    der = client.getpeercert(binary_form=True)
    assert der is not None
    return der


async def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    first_cert, first_key = make_certificate(tmp_path, "first")
    second_cert, second_key = make_certificate(tmp_path, "second")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(first_cert.read_bytes())
    key.write_bytes(first_key.read_bytes())
    context = tls_context(str(cert), str(key))
    der = {path: ssl.PEM_cert_to_DER_cert(path.read_text()) for path in (first_cert, second_cert)}
    assert served_certificate(context) == der[first_cert]

    sleeps = 0

    async def sleep(_: float) -> None:
        nonlocal sleeps
        sleeps += 1
        if sleeps == 1:  # cert-manager renews the Secret; the kubelet updates the files
            cert.write_bytes(second_cert.read_bytes())
            key.write_bytes(second_key.read_bytes())
            os.utime(cert, (1, 1))
            os.utime(key, (1, 1))
        else:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await reload_certificates(context, str(cert), str(key), sleep=sleep)
    assert served_certificate(context) == der[second_cert]
