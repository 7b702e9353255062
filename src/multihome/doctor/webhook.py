"""``multihome webhook``: the same findings at ``kubectl apply``, as a validating webhook.

The API server POSTs an ``AdmissionReview`` (``admission.k8s.io/v1``) over
TLS to ``/validate`` for NADs (CREATE, UPDATE) and Pods (CREATE).  NADs are
checked with `preflight.check_nad`, pods with `preflight.check_pod`: the
findings an ADD would have, and lint's ahead-of-time ones.  Error findings
deny the request and are listed in its message; warnings go into
``response.warnings``, which kubectl prints.

Pods need their NADs.  They come from a list-then-watch cache
(`multihome.cluster.watching.Reflector`): an admission request never
causes a LIST or GET, because an upstream webhook's LIST per request drove
a 225-node cluster's API server into an OOM loop.  Until the first list
completes the cache is *cold*: a pod is then checked without NADs (its
annotation, MACs, IPs, interface names) and a ``nad-cache-cold`` warning
says so, so the answer never waits for the API.

On UPDATE of a NAD, only errors that the old object did not already have
deny it: a NAD admitted before multihome knew better can still be edited
(and its labels changed), with its old errors as warnings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from multihome.cluster.kube import NADS_PATH, trim_nad
from multihome.cluster.watching import Reflector
from multihome.daemon.exposition import CONTENT_TYPE, Counter, Gauge, Histogram, Registry
from multihome.daemon.httpserver import ReadDeadlines, Request, Response, Routes, Server
from multihome.daemon.logs import ContextFilter, JSONFormatter, bound
from multihome.networks import preflight
from multihome.networks.addressing import IPNetwork
from multihome.networks.attachment import referenced_nads
from multihome.networks.config import MultusConfig
from multihome.networks.findings import Finding, finding

from .lint import default_config

log = logging.getLogger(__name__)

API_VERSION = "admission.k8s.io/v1"
NAD_KIND = "NetworkAttachmentDefinition"
#: Findings that need the node's files or the NADs themselves; not the webhook's to judge.
_NODE_ONLY = frozenset({"nad-config-not-found", "conf-file-invalid", "network-not-found"})
_NEEDS_NADS = frozenset({"nad-not-found"})
#: How long a pod's admission waits for NADs it names to arrive by the watch: a
#: ``kubectl apply`` of a NAD and a pod in one file creates them milliseconds apart.
NAD_WAIT = 1.0
#: Seconds a client (the API server) has to send a request, TLS handshake included.
READ_TIMEOUT = 10.0
#: The largest AdmissionReview read (a pod with its status is a few KiB).
MAX_REVIEW_BYTES = 4 << 20
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class WebhookMetrics:
    def __init__(self) -> None:
        self.registry = Registry()
        reg = self.registry
        self.requests = Counter(
            "multihome_webhook_requests",
            "Admission requests by kind, operation and result (allowed, denied, invalid)",
            ["kind", "operation", "result"],
            registry=reg,
        )
        self.denials = Counter(
            "multihome_webhook_denials",
            "Denied admission requests by the finding codes that denied them",
            ["kind", "code"],
            registry=reg,
        )
        self.seconds = Histogram(
            "multihome_webhook_request_duration_seconds",
            "Time to answer an admission request, by kind",
            ["kind"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.nads = Gauge("multihome_webhook_nads_cached", "NADs in the watch cache", registry=reg)
        self.synced = Gauge(
            "multihome_webhook_nad_cache_synced",
            "1 once the NAD cache has completed its first list",
            registry=reg,
        )


@dataclass
class Validator:
    """What the webhook decides, without HTTP: one AdmissionReview in, one out."""

    config: MultusConfig = field(default_factory=default_config)
    cluster_cidrs: Sequence[IPNetwork] = ()
    #: The NAD cache; None without a cluster (every pod is checked cold).
    nads: Reflector | None = None

    @property
    def warm(self) -> bool:
        return self.nads is not None and self.nads.synced.is_set()

    def lookup(self, namespace: str, name: str) -> Any:
        return self.nads.get(namespace, name) if self.nads is not None else None

    async def wait_for_nads(self, request: dict[str, Any], *, timeout: float = NAD_WAIT) -> None:
        """Give the watch a moment to deliver NADs a pod names that the cache lacks.

        Only the watch is waited for; no request is made.  A warm cache
        without the NAD after ``timeout`` means it does not exist.
        """
        obj = request.get("object")
        kind = (request.get("kind") or {}).get("kind", "")
        if self.nads is None or not self.warm or kind != "Pod" or not isinstance(obj, dict):
            return
        namespace = str(request.get("namespace") or "") or "default"
        wanted = referenced_nads(config=self.config, pod=obj, namespace=namespace)
        nads = self.nads
        if all(nads.get(ns, name) is not None for ns, name in wanted):
            return
        await nads.until(
            lambda: all(nads.get(ns, name) is not None for ns, name in wanted), timeout=timeout
        )

    def review(self, request: dict[str, Any]) -> tuple[bool, list[Finding], list[Finding]]:
        """``(allowed, errors, warnings)`` for one admission request."""
        kind = (request.get("kind") or {}).get("kind", "")
        operation = request.get("operation", "")
        obj = request.get("object")
        if not isinstance(obj, dict):
            return True, [], []
        if kind == NAD_KIND and operation in ("CREATE", "UPDATE"):
            found = self._nad(obj)
            if operation == "UPDATE" and isinstance(request.get("oldObject"), dict):
                before = {(f.code, f.path) for f in self._nad(request["oldObject"])}
                return self._split(found, before)
            return self._split(found, set())
        if kind == "Pod" and operation == "CREATE":
            return self._split(self._pod(obj, str(request.get("namespace") or "")), set())
        return True, [], []

    def _nad(self, obj: dict[str, Any]) -> list[Finding]:
        _, found = preflight.check_nad(obj, cluster_cidrs=self.cluster_cidrs)
        return [f for f in found if f.code not in _NODE_ONLY]

    def _pod(self, obj: dict[str, Any], namespace: str) -> list[Finding]:
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        pod = obj
        if namespace and not meta.get("namespace"):
            # CREATE of a pod from a workload: the name may still be generateName's.
            pod = {**obj, "metadata": {**meta, "namespace": namespace}}
        _, found = preflight.check_pod(
            config=self.config, pod=pod, nads=self.lookup, namespace=namespace
        )
        found = [f for f in found if f.code not in _NODE_ONLY]
        if not self.warm:
            skipped = [f for f in found if f.code in _NEEDS_NADS]
            found = [f for f in found if f.code not in _NEEDS_NADS]
            if skipped:
                found.append(
                    finding(
                        "nad-cache-cold",
                        "networks",
                        "checked without the NADs ("
                        + ", ".join(f.path for f in skipped)
                        + "): the webhook has not listed them yet",
                    )
                )
        return found

    @staticmethod
    def _split(
        found: list[Finding], before: set[tuple[str, str]]
    ) -> tuple[bool, list[Finding], list[Finding]]:
        errors = [f for f in found if f.severity == "error" and (f.code, f.path) not in before]
        warnings = [f for f in found if f not in errors and f.severity != "info"]
        return not errors, errors, warnings


def _describe(item: Finding) -> str:
    text = f"[{item.code}] {item.path}: {item.message}" if item.path else item.message
    return f"{text} (hint: {item.hint})" if item.hint else text


def response(
    uid: str, allowed: bool, errors: Sequence[Finding], warnings: Sequence[Finding], *, kind: str
) -> dict[str, Any]:
    """The AdmissionReview the API server expects back (``uid`` echoed)."""
    answer: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        count = f"{len(errors)} errors" if len(errors) > 1 else "an error"
        answer["status"] = {
            "code": 403,
            "reason": "Forbidden",
            "message": f"multihome: the {kind} has {count}: "
            + "; ".join(_describe(e) for e in errors),
        }
    if warnings:
        answer["warnings"] = [f"multihome: {_describe(w)}" for w in warnings]
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": answer}


def routes(validator: Validator, metrics: WebhookMetrics) -> Routes:
    """``/validate``, ``/healthz`` and ``/metrics``."""

    async def validate(http: Request) -> Response:
        started = time.monotonic()
        try:
            body = json.loads(await http.read())
            request = body["request"]
            uid = str(request["uid"])
            kind = str((request.get("kind") or {}).get("kind", ""))
            operation = str(request.get("operation", ""))
        except (ValueError, KeyError, TypeError, AttributeError):
            metrics.requests.labels("", "", "invalid").inc()
            return Response.text(
                "expected an AdmissionReview (admission.k8s.io/v1) with request.uid", 400
            )
        meta = request.get("object") or {}
        meta = meta.get("metadata") if isinstance(meta, dict) else {}
        name = meta.get("name") or meta.get("generateName") or "" if isinstance(meta, dict) else ""
        target = f"{request.get('namespace') or ''}/{name}"
        with bound(request=uid, command=f"{operation} {kind}", pod=target):
            await validator.wait_for_nads(request)
            allowed, errors, warnings = validator.review(request)
            result = "allowed" if allowed else "denied"
            metrics.requests.labels(kind, operation, result).inc()
            for code in sorted({e.code for e in errors}):
                metrics.denials.labels(kind, code).inc()
            seconds = time.monotonic() - started
            metrics.seconds.labels(kind).observe(seconds)
            log.info(
                "%s %s %s: %s%s in %.1f ms%s",
                operation,
                kind,
                target,
                result,
                f" ({', '.join(e.code for e in errors)})" if errors else "",
                seconds * 1000,
                " (dry run)" if request.get("dryRun") else "",
            )
        return Response.json(response(uid, allowed, errors, warnings, kind=kind))

    async def healthz(_: Request) -> Response:
        return Response.json({"ok": True, "nadCacheSynced": validator.warm})

    async def metrics_page(_: Request) -> Response:
        if validator.nads is not None:
            metrics.nads.set(len(validator.nads.objects))
        metrics.synced.set(1 if validator.warm else 0)
        return Response(body=metrics.registry.exposition(), content_type=CONTENT_TYPE)

    served = Routes()
    served.post("/validate", validate)
    served.get("/healthz", healthz)
    served.get("/metrics", metrics_page)
    return served


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def reload_certificates(
    context: ssl.SSLContext,
    cert: str,
    key: str,
    *,
    every: float = 60.0,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> None:
    """Load a renewed certificate (cert-manager rotates the Secret) for new connections."""
    stamp = _stamp(cert, key)
    while True:
        await sleep(every)
        now = _stamp(cert, key)
        if now != stamp:
            try:
                context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as err:
                log.warning("cannot load the renewed certificate %s: %s", cert, err)
                continue
            stamp = now
            log.info("loaded the renewed certificate %s", cert)


def _stamp(*paths: str) -> tuple[float, ...]:
    out = []
    for path in paths:
        try:
            out.append(os.stat(path).st_mtime)
        except OSError:
            out.append(0.0)
    return tuple(out)


def configure_logging() -> None:
    """JSON lines on stderr, as the daemon writes them with logJSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


async def serve(
    *,
    cert: str,
    key: str,
    port: int,
    address: str = "0.0.0.0",
    kubeconfig: str = "",
    config: MultusConfig | None = None,
    cluster_cidrs: Sequence[IPNetwork] = (),
    started: Callable[[int, Validator], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Serve until ``stop`` is set (or forever); ``started`` gets the port and the validator."""
    from multihome.cluster import credentials
    from multihome.cluster.kubeclient import KubeClient

    try:
        context = tls_context(cert, key)
    except (OSError, ssl.SSLError) as err:
        log.error("cannot load the certificate %s and key %s: %s", cert, key, err)
        return 1
    try:
        creds = credentials.load(kubeconfig)
    except credentials.CredentialsError as err:
        log.error("cannot reach the API for the NAD cache: %s", err)
        return 1
    if stop is None:
        stop = asyncio.Event()
        # The kubelet's SIGTERM (a rollout, a drain) ends the webhook cleanly.
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    client = KubeClient(creds)
    nads = Reflector(client, path=NADS_PATH, trim=trim_nad)
    validator = Validator(config or default_config(), cluster_cidrs, nads)
    server = Server(
        routes(validator, WebhookMetrics()),
        deadlines=ReadDeadlines(READ_TIMEOUT),
        max_body=MAX_REVIEW_BYTES,
    )
    tasks = [
        asyncio.create_task(nads.run()),
        asyncio.create_task(reload_certificates(context, cert, key)),
    ]
    try:
        _, bound_port = await server.listen_tcp(address, port, tls=context)
        log.info("serving admission reviews on https://%s:%d/validate", address, bound_port)
        if started is not None:
            started(bound_port, validator)
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await server.close()
        await client.close()
    return 0


def main(
    *,
    cert: str,
    key: str,
    port: int,
    kubeconfig: str,
    multus_config: str,
    cluster_cidrs: Sequence[str],
) -> int:
    from multihome.cni.errors import CNIError

    from .lint import parse_cidrs

    configure_logging()
    config = None
    if multus_config:
        try:
            with open(multus_config, "rb") as handle:
                config = MultusConfig.parse(handle.read())
        except (OSError, CNIError) as err:
            log.error("cannot use the multus configuration %s: %s", multus_config, err)
            return 1
    return asyncio.run(
        serve(
            cert=cert,
            key=key,
            port=port,
            kubeconfig=kubeconfig,
            config=config,
            cluster_cidrs=parse_cidrs(cluster_cidrs),
        )
    )
