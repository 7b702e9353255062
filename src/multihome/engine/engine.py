"""The attach engine: every network a pod asks for, or none.

One `Engine` serves the CNI commands for pods.  ADD plans the attachments
(`multihome.networks.attachment.plan_pod`), stops before any plugin runs if
the plan has errors, records the plan in the attachment cache, runs the
cluster network and then the other networks (in parallel when configured),
checks that each network gave what was asked for, moves default routes, and
reports.  Every delegate that started is deleted again, in reverse order,
when anything fails: a pod is attached completely or not at all.

DEL works from the attachment cache alone (no API, no NAD), is idempotent,
and always makes progress.  CHECK checks every attachment, GC deletes cached
attachments the runtime no longer knows, STATUS asks the cluster network.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multihome.cluster.deferred import DeferredSource
from multihome.cluster.devices import Devices, PodDevices
from multihome.cluster.local import LocalSource, ManifestError
from multihome.cluster.source import Object, Source
from multihome.cni import version as versions
from multihome.cni.config import NetConfList
from multihome.cni.errors import CNIError, Code
from multihome.cni.finding import check_plugin_type
from multihome.cni.invoking import (
    add_network_list,
    check_network_list,
    del_network_list,
    gc_network_list,
    status_network_list,
)
from multihome.cni.process import Exec, RuntimeConf, default_exec
from multihome.cni.request import Request
from multihome.cni.result import Interface, IPConfig, Result
from multihome.cni.version import version_text
from multihome.networks.confdir import ConfFiles
from multihome.networks.config import MultusConfig
from multihome.networks.findings import Finding, errors, to_cni_error
from multihome.networks.nad import RESOURCE_NAME_ANNOTATION

from . import devicefiles, locks, podnet, statuswrites
from .cache import AttachmentCache, CachedAttachment, CacheRecord
from .conffiles import DiskFiles

# The planning layer (what a pod asks for, pre-flight, verification, the
# network-status) is imported where an ADD, a re-plan or a DEL without its
# record first needs it: a thin DEL with its record is a new interpreter
# that needs none of it (22 ms of its 190 here; tests/netns/test_thin_imports.py).
# A long-lived process takes it at start instead (`import_planning`).
if TYPE_CHECKING:
    from multihome.cluster.kube import KubeSource
    from multihome.networks.attachment import Attachment, PodPlan

log = logging.getLogger(__name__)


def import_planning() -> None:
    """Import what the engine otherwise imports where it is first needed.

    For the daemon, at start: its first request should not wait for the
    imports, nor every other request on the event loop while they run.
    """
    from multihome.networks import attachment, plugins, status, validation  # noqa: F401

    from . import hotplug, probing  # noqa: F401


#: Upstream waits this long for the readiness indicator file on ADD.
READINESS_WAIT = 45.0
# Codes of DEL errors worth returning: the runtime retries DEL, and a retry
# can only help when the failure was transient.
_RETRYABLE = {Code.TRY_AGAIN_LATER, Code.IO_FAILURE}


@dataclass(eq=False)
class Outcome:
    """What an ADD produced, for the caller's report (events, metrics, logs)."""

    plan: PodPlan
    result: Result
    results: list[Result]
    findings: list[Finding] = field(default_factory=list)
    delegate_seconds: dict[str, float] = field(default_factory=dict)


@dataclass(eq=False)
class Done:
    """A command's answer to the runtime and what callers report about it."""

    text: str = ""
    #: ADD: the plan, the results and the timings.
    outcome: Outcome | None = None
    #: DEL: the cached record whose attachments were deleted (None: nothing cached).
    deleted: CacheRecord | None = None


class Engine:
    """ADD, DEL, CHECK, GC and STATUS of pods.

    ``source`` gives pods and NADs; without one, the multus config's
    ``manifestDir`` is used when set, else the pod has only the networks of
    the config.  ``executor`` runs plugin binaries, ``files`` reads CNI
    configuration files, ``netns_ops`` reads and changes namespaces,
    ``devices`` tells which devices the kubelet gave a pod (default: the
    source's, else the kubelet's alone): all injectable for tests.
    """

    def __init__(
        self,
        *,
        source: Source | None = None,
        executor: Exec | None = None,
        files: ConfFiles | None = None,
        cache_dir: str | None = None,
        on_delegate: Callable[[str, str, float], None] | None = None,
        event_per_interface: bool = False,
        status_budget: float = statuswrites.ATTEMPT_BUDGET,
        status_in_background: bool = False,
        devices: Devices | None = None,
    ) -> None:
        self.source = source
        self.devices = devices
        self.executor = executor or default_exec()
        self.files = files or DiskFiles()
        self.cache_dir = cache_dir
        self.on_delegate = on_delegate
        #: Upstream's one AddedInterface event per interface, instead of one per ADD.
        self.event_per_interface = event_per_interface
        #: How long an ADD waits for its network-status write before leaving it pending.
        self.status_budget = status_budget
        #: An ADD leaves its network-status to a writer (the daemon's) instead of
        #: waiting for the API: it answers once the networks are attached.
        self.status_in_background = status_in_background
        self._local_sources: dict[str, LocalSource] = {}

    # -- the request -------------------------------------------------------------------
    async def handle(self, request: Request, config: MultusConfig | None = None) -> str:
        """Run a request; the text to print on success.  Errors raise `CNIError`.

        ``config``: the request's configuration, when the caller parsed it already.
        """
        if request.command == "VERSION":
            return version_text()
        if config is None:
            config = MultusConfig.parse(request.stdin)
        for notice in config.notices:
            log.info("%s", notice)
        if self.source is None and config.kubeconfig and not config.manifest_dir:
            return await self._with_kube(request, config)
        return (await self.run(request, config)).text

    async def run(self, request: Request, config: MultusConfig) -> Done:
        """One command with its configuration parsed; what it printed and produced.

        ADD, DEL and CHECK hold the container's lock file (`multihome.engine.locks`),
        GC the node's: one command at a time per container, in every mode.
        """
        if request.command in ("ADD", "DEL", "CHECK") and request.container_id:
            async with locks.container_lock(
                self._cache(config).directory,
                request.container_id,
                best_effort=request.command == "DEL",
            ):
                return await self._run(request, config)
        return await self._run(request, config)

    async def _run(self, request: Request, config: MultusConfig) -> Done:
        if request.command == "ADD":
            outcome = await self.add(request, config)
            return Done(outcome.result.to_json(config.cni_version), outcome=outcome)
        if request.command == "DEL":
            return Done(deleted=await self.delete(request, config))
        if request.command == "CHECK":
            await self.check(request, config)
        elif request.command == "GC":
            await self.gc(request, config)
        elif request.command == "STATUS":
            await self.status(request, config)
        return Done()

    async def _with_kube(self, request: Request, config: MultusConfig) -> str:
        """One request against the API without a watch cache (the thin plugin).

        Each lookup is one GET; queued events are sent before returning.  A
        DEL makes its client where it first needs it, beside its delegates'
        DELs (`multihome.cluster.deferred`).
        """

        def make() -> KubeSource:
            from multihome.cluster.credentials import CredentialsError
            from multihome.cluster.kube import KubeConfig, KubeSource

            try:
                return KubeSource(KubeConfig(kubeconfig=config.kubeconfig, pod_wait=0))
            except CredentialsError as err:
                raise CNIError(
                    Code.IO_FAILURE, f"failed to read kubeconfig {config.kubeconfig!r}: {err}"
                ) from err

        source: KubeSource | DeferredSource
        source = DeferredSource(make) if request.command == "DEL" else make()
        try:
            engine = copy.copy(self)  # the same settings, this source
            engine.source = source
            return (await engine.run(request, config)).text
        finally:
            await source.stop()

    def _cache(self, config: MultusConfig) -> AttachmentCache:
        return AttachmentCache(self.cache_dir or os.path.join(config.cni_dir, "multihome"))

    def _source(self, config: MultusConfig) -> Source | None:
        if self.source is not None:
            return self.source
        if config.manifest_dir:
            # One per directory, kept: it caches the parsed manifests.
            source = self._local_sources.get(config.manifest_dir)
            if source is None:
                source = self._local_sources[config.manifest_dir] = LocalSource(config.manifest_dir)
            return source
        return None

    def _runtime(self, config: MultusConfig, request: Request, **kw: Any) -> RuntimeConf:
        return RuntimeConf(
            container_id=request.container_id,
            netns=request.netns,
            cni_path=(config.bin_dir, *request.path),
            **kw,
        )

    # -- ADD --------------------------------------------------------------------------
    async def add(self, request: Request, config: MultusConfig) -> Outcome:
        await _wait_for_readiness(config.readiness_indicator_file, READINESS_WAIT)
        source = self._source(config)
        cache = self._cache(config)
        # A lookup inline (the usual answer is "none"); the read, if any, in a thread.
        stale = (
            await asyncio.to_thread(cache.load, request.container_id)
            if cache.has(request.container_id)
            else None
        )
        if stale is not None:
            # An ADD that died half-way (daemon killed, node rebooted) left its
            # record: undo it before trying again.
            log.info("container %s: removing the attachments of an earlier ADD", stale.pod)
            await self._delete_record(stale, config, cni_path=request.path)
            await asyncio.to_thread(cache.remove, request.container_id)
        # A status still owed to an earlier ADD of this container is not this one's.
        await statuswrites.drop(cache.directory, request.container_id)

        pod = await self._pod(source, request)
        plan, findings = await self._plan(source, config, request, pod, with_devices=True)
        findings += await self._check_plugins(plan, config, request)
        for item in findings:
            if item.severity != "error":
                log.info("%s/%s: %s", plan.namespace, plan.name, item)
        error = to_cni_error(findings)
        if error is not None:
            if source is not None and pod is not None:
                message = "; ".join(f.message for f in errors(findings))
                await _quietly(
                    source.emit_event(
                        pod, type="Warning", reason="InvalidNetworks", message=message
                    )
                )
            raise error.prefixed(f"pod {plan.namespace}/{plan.name}")

        record = _record(request, config, plan, pod)
        # A stat of a namespace mount: inline.
        had_netns = bool(request.netns) and os.path.exists(request.netns)
        # Written before anything runs: a crash from here on leaves a record
        # that DEL (or the next ADD) uses to clean up.
        await asyncio.to_thread(cache.save, record)
        outcome = Outcome(
            plan=plan, result=Result(config.cni_version), results=[], findings=findings
        )
        try:
            results = await self._add_all(plan, record, config, request, outcome)
            await self._verify_namespace(plan, request, results)
            await self._move_default_routes(plan, request)
            if had_netns and not os.path.exists(request.netns):
                # The runtime tore the sandbox down while the chains ran: its
                # interfaces went with it; "ok" would describe nothing.
                raise CNIError(
                    Code.CONTAINER_UNKNOWN,
                    f"pod {plan.namespace}/{plan.name}: the network namespace "
                    f"{request.netns} was removed during ADD",
                    "the sandbox is gone; the runtime makes a new one and retries",
                )
            # What DEL needs is part of the attachment: a record that cannot be
            # saved (disk full) undoes the ADD.
            await asyncio.to_thread(cache.save, record, replacing=True)
        except BaseException as err:
            failed = await self._delete_record(
                record, config, cni_path=request.path, started_only=True, keep_failed=True
            )
            if failed:
                # Not undone (a plugin that hangs, a shutdown that killed it): the
                # record stays, so the retried ADD or the DEL finishes the job.
                record.attachments = failed
                await asyncio.to_thread(cache.save, record, replacing=True)
            else:
                await asyncio.to_thread(cache.remove, request.container_id)
            if isinstance(err, CNIError) and source is not None and pod is not None:
                await _quietly(
                    source.emit_event(pod, type="Warning", reason="AddFailed", message=err.msg)
                )
            raise
        outcome.results = results
        outcome.result = next(
            (r for a, r in zip(plan.attachments, results, strict=True) if a.is_default), results[0]
        )
        if source is not None and pod is not None:
            await self._report(source, pod, plan, results, cache=cache, config=config)
        return outcome

    async def _pod(self, source: Source | None, request: Request) -> Object | None:
        k8s = request.k8s
        if source is None or not k8s.name:
            return None
        namespace = k8s.namespace or "default"
        try:
            pod = await source.get_pod(namespace, k8s.name, uid=k8s.uid)
        except ManifestError as err:
            raise CNIError(Code.IO_FAILURE, f"failed to read the manifests: {err}") from err
        if pod is None:
            # Upstream answers with a made-up 0.0.0.0/0 result; a pod that does
            # not exist gets no network, and the runtime is told so.
            raise CNIError(
                Code.CONTAINER_UNKNOWN,
                f"pod {namespace}/{k8s.name} does not exist",
                "the pod was deleted, or K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS are wrong",
            )
        return pod

    async def _plan(
        self,
        source: Source | None,
        config: MultusConfig,
        request: Request,
        pod: Object | None,
        *,
        with_devices: bool = False,
    ) -> tuple[PodPlan, list[Finding]]:
        from multihome.networks.attachment import plan_pod, referenced_nads

        nads: dict[tuple[str, str], Any] = {}
        if source is not None:
            wanted = referenced_nads(config=config, pod=pod, namespace=request.k8s.namespace)
            try:
                found = await asyncio.gather(*(source.get_nad(ns, name) for ns, name in wanted))
            except ManifestError as err:
                raise CNIError(Code.IO_FAILURE, f"failed to read the manifests: {err}") from err
            nads = dict(zip(wanted, found, strict=True))
        devices = self._devices(source)
        assigned = None
        if with_devices and pod is not None and _wants_devices(nads.values()):
            assigned = await devices.assigned(pod)
        return plan_pod(
            config=config,
            pod=pod,
            request=request,
            nads=lambda ns, name: nads.get((ns, name)),
            files=self.files,
            devices=assigned,
            device_info_dir=devices.info_dir,
        )

    async def _check_plugins(
        self, plan: PodPlan, config: MultusConfig, request: Request
    ) -> list[Finding]:
        """Every plugin of every network is installed and speaks its network's version."""
        from multihome.networks.plugins import plugin_findings, plugin_types

        from .probing import probe_plugin

        cni_path = (config.bin_dir, *request.path)
        # An invalid type is a finding of its own already; it is looked up nowhere.
        types = [t for t in plugin_types(plan.attachments) if _valid_type(t)]
        found = await asyncio.gather(*(probe_plugin(self.executor, t, cni_path) for t in types))
        return plugin_findings(
            plan.attachments, dict(zip(types, found, strict=True)), cni_path=cni_path
        )

    def _devices(self, source: Source | None) -> Devices:
        if self.devices is None:
            # A KubeSource knows the kubelet's paths and asks DRA through its client.
            found = getattr(source, "devices", None)
            self.devices = found if found is not None else PodDevices()
        return self.devices

    async def _add_all(
        self,
        plan: PodPlan,
        record: CacheRecord,
        config: MultusConfig,
        request: Request,
        outcome: Outcome,
    ) -> list[Result]:
        results: list[Result | None] = [None] * len(plan.attachments)

        async def one(index: int) -> None:
            results[index] = await self._add_one(
                plan, index, record=record, config=config, request=request, outcome=outcome
            )

        order = list(range(len(plan.attachments)))
        first = [i for i in order if plan.attachments[i].is_default]
        rest = [i for i in order if i not in first]
        for index in first:
            await one(index)
        if config.parallel_delegates and len(rest) > 1:
            limit = config.max_parallel_delegates or len(rest)
            gate = asyncio.Semaphore(limit)

            async def gated(index: int) -> None:
                async with gate:
                    await one(index)

            # Every delegate finishes (or fails) before the caller rolls back,
            # so none is still running while its undo runs.
            done = await asyncio.gather(*(gated(i) for i in rest), return_exceptions=True)
            failures = [d for d in done if isinstance(d, BaseException)]
            if failures:
                raise _all_failed(plan, failures)
        else:
            for index in rest:
                await one(index)
        return [r for r in results if r is not None]

    async def _add_one(
        self,
        plan: PodPlan,
        index: int,
        *,
        record: CacheRecord,
        config: MultusConfig,
        request: Request,
        outcome: Outcome,
    ) -> Result:
        attachment = plan.attachments[index]
        cached = record.attachments[index]
        cached.state = "adding"
        rt = self._runtime(
            config,
            request,
            ifname=attachment.ifname,
            args=attachment.cni_args,
            capability_args=dict(attachment.capability_args),
        )
        if attachment.device_plugin_file:
            await asyncio.to_thread(
                devicefiles.copy_from_plugin,
                attachment.device_plugin_file,
                attachment.device_info_file,
            )
        started = time.monotonic()
        try:
            result = await add_network_list(attachment.conf, rt, executor=self.executor)
        except CNIError as err:
            raise err.prefixed(_where(plan, attachment)) from None
        finally:
            elapsed = time.monotonic() - started
            outcome.delegate_seconds[attachment.name] = elapsed
            if self.on_delegate is not None:
                for plugin in attachment.conf.plugins:
                    self.on_delegate(attachment.name, plugin.type, elapsed)
        cached.state = "added"
        cached.result = result.to_dict()
        self._verify(plan, attachment, result)
        return result

    def _verify(self, plan: PodPlan, attachment: Attachment, result: Result) -> None:
        """Fail the ADD when the chain's result lacks what the pod asked for."""
        from multihome.networks.validation import compare_requested

        if attachment.selection is not None:
            found = errors(
                compare_requested(attachment.selection, result, ifname=attachment.ifname)
            )
            if found:
                raise _not_applied(plan, attachment, found)

    async def _verify_namespace(
        self, plan: PodPlan, request: Request, results: Sequence[Result]
    ) -> None:
        """The same against the namespace itself, once per ADD after every network ran.

        A plugin may report what it was asked for without having done it: a
        result that only lists the address, or names no sandbox, is checked
        in the pod (``nsenter ip -j addr``, about 3 ms).  One that states the
        interface in this sandbox with the requested MAC, and each requested
        address on it, is taken at its word (`result_states_applied`).
        """
        from multihome.networks.validation import compare_requested, result_states_applied

        asking = [
            (a, a.selection)
            for a, result in zip(plan.attachments, results, strict=True)
            if a.selection
            and (a.selection.mac or a.selection.ips)
            and not result_states_applied(a.selection, result, ifname=a.ifname, netns=request.netns)
        ]
        if not asking:
            return
        try:
            links = await podnet.read_links(request.netns)
        except (OSError, TimeoutError) as err:
            raise CNIError(Code.IO_FAILURE, f"cannot look into {request.netns}: {err}") from err
        for attachment, selection in asking:
            observed = _as_result(links.get(attachment.ifname), request.netns)
            found = errors(compare_requested(selection, observed, ifname=attachment.ifname))
            if found:
                raise _not_applied(plan, attachment, found)

    async def _move_default_routes(self, plan: PodPlan, request: Request) -> None:
        take: list[podnet.DefaultRoute] = []
        clear: list[tuple[str, int]] = []
        for attachment in plan.attachments:
            selection = attachment.selection
            if selection is None or selection.default_route is None:
                continue
            if not selection.default_route:
                clear += [(attachment.ifname, 4), (attachment.ifname, 6)]
            take += [podnet.DefaultRoute(attachment.ifname, gw) for gw in selection.default_route]
        if take or clear:
            try:
                await podnet.apply_default_routes(request.netns, take=take, clear=clear)
            except (OSError, TimeoutError) as err:
                raise CNIError(
                    Code.IO_FAILURE,
                    f"pod {plan.namespace}/{plan.name}: failed to set the default routes: {err}",
                ) from err

    async def _report(
        self,
        source: Source,
        pod: Object,
        plan: PodPlan,
        results: Sequence[Result],
        *,
        cache: AttachmentCache,
        config: MultusConfig,
    ) -> None:
        from multihome.networks.status import network_statuses, serialise

        statuses = []
        added = []
        infos: list[dict[str, Any] | None] = [None] * len(plan.attachments)
        if any(a.device_info_file for a in plan.attachments):
            infos = await asyncio.to_thread(
                lambda: [devicefiles.read(a.device_info_file) for a in plan.attachments]
            )
        for attachment, result, info in zip(plan.attachments, results, infos, strict=True):
            statuses += network_statuses(
                result,
                name=attachment.name,
                default=attachment.is_default,
                ifname=attachment.ifname,
                device_info=info,
            )
            if result.interfaces or result.ips:
                ips = [ip.address for ip in result.ips]
                added.append(f"Add {attachment.ifname} [{' '.join(ips)}] from {attachment.name}")
        await self._write_status(source, pod, plan, serialise(statuses), cache=cache, config=config)
        if added and not self.event_per_interface:
            added = [", ".join(added)]
        for message in added:
            await _quietly(
                source.emit_event(pod, type="Normal", reason="AddedInterface", message=message)
            )

    async def _write_status(
        self,
        source: Source,
        pod: Object,
        plan: PodPlan,
        status: str,
        *,
        cache: AttachmentCache,
        config: MultusConfig,
    ) -> None:
        """Write the network-status; when that fails, keep it pending (`statuswrites`).

        In the background (the daemon): kept pending at once, for the writer.
        """
        pending = statuswrites.PendingStatus(
            container_id=plan.container_id,
            namespace=plan.namespace,
            name=plan.name,
            uid=plan.uid or str((pod.get("metadata") or {}).get("uid") or ""),
            status=status,
            manifest_dir=config.manifest_dir if self.source is None else "",
            since=time.time(),
        )
        if self.status_in_background:
            # Not synced: it lives as long as the sandbox does, and a node
            # that crashes takes the sandbox with it.  So it is a write to the
            # page cache: inline, where a thread hop costs more than the write.
            statuswrites.save(cache.directory, pending, sync=False)
            return
        try:
            async with asyncio.timeout(self.status_budget):
                await source.set_network_status(pod, status)
            return
        except Exception as err:
            problem = str(err) or f"no answer within {self.status_budget:g} s"
        log.warning(
            "pod %s/%s: network-status not written, kept to retry: %s",
            plan.namespace,
            plan.name,
            problem,
        )
        pending.attempts, pending.last_error = 1, problem
        await asyncio.to_thread(statuswrites.save, cache.directory, pending)
        await _quietly(statuswrites.warn(source, pending))

    def _pending_source(self, pending: statuswrites.PendingStatus) -> Source | None:
        if pending.manifest_dir:
            source = self._local_sources.get(pending.manifest_dir)
            if source is None:
                source = LocalSource(pending.manifest_dir)
                self._local_sources[pending.manifest_dir] = source
            return source
        return self.source

    async def write_pending_one(self, cache_dir: str | os.PathLike[str], container_id: str) -> bool:
        """One try for ``container_id``'s pending network-status; True once nothing is pending."""
        return await statuswrites.attempt(
            cache_dir, container_id, self._pending_source, budget=self.status_budget
        )

    async def write_pending(self, cache_dir: str | os.PathLike[str]) -> int:
        """One try for each network-status write ``cache_dir`` still owes; how many remain."""
        return await statuswrites.attempt_all(
            cache_dir, self._pending_source, budget=self.status_budget
        )

    # -- hot-plug: attachments added to and removed from a running sandbox ---------------
    # The caller (`multihome.daemon.hotplug`) holds the container's lock and has
    # just read ``record``; these save it after every change.

    async def replan(
        self, record: CacheRecord, config: MultusConfig, pod: Object
    ) -> tuple[PodPlan, list[Finding]]:
        """The plan of ``pod`` as it is now, for ``record``'s sandbox: what it wishes."""
        return await self._plan(self._source(config), config, request_of(record), pod)

    async def preflight(
        self, record: CacheRecord, attachments: Sequence[Attachment], config: MultusConfig
    ) -> list[Finding]:
        """The plugin pre-flight of a pod's ADD, for ``attachments`` of ``record``'s sandbox."""
        plan = _sandbox_plan(record, attachments)
        return await self._check_plugins(plan, config, request_of(record))

    async def add_attachments(
        self,
        record: CacheRecord,
        attachments: Sequence[Attachment],
        config: MultusConfig,
    ) -> Outcome:
        """ADD ``attachments`` to ``record``'s sandbox: all of them, or none (rolled back).

        The same pre-flight, checks of the results and of the namespace, and
        default routes as a pod's ADD; the record holds each one before it runs.
        """
        cache = self._cache(config)
        request = request_of(record)
        plan = _sandbox_plan(record, attachments)
        findings = await self.preflight(record, attachments, config)
        error = to_cni_error(findings)
        if error is not None:
            raise error.prefixed(f"pod {plan.namespace}/{plan.name}")
        from . import hotplug

        added = [_cached(a, origin=hotplug.HOTPLUG) for a in attachments]
        part = dataclasses.replace(record, attachments=added)
        record.attachments += added
        await asyncio.to_thread(cache.save, record)
        outcome = Outcome(
            plan=plan, result=Result(config.cni_version), results=[], findings=findings
        )
        try:
            outcome.results = await self._add_all(plan, part, config, request, outcome)
            await self._verify_namespace(plan, request, outcome.results)
            await self._move_default_routes(plan, request)
            await asyncio.to_thread(cache.save, record)
        except BaseException:
            failed = await self._delete_record(
                part, config, cni_path=request.path, started_only=True, keep_failed=True
            )
            undone = {id(a) for a in added} - {id(a) for a in failed}
            record.attachments = [a for a in record.attachments if id(a) not in undone]
            await asyncio.to_thread(cache.save, record)
            raise
        return outcome

    async def remove_attachments(
        self, record: CacheRecord, attachments: Sequence[CachedAttachment], config: MultusConfig
    ) -> list[CachedAttachment]:
        """DEL ``attachments`` of ``record``; those that failed and stay in the record."""
        part = dataclasses.replace(record, attachments=list(attachments))
        failed = await self._delete_record(part, config, cni_path=record.cni_path, keep_failed=True)
        gone = {id(a) for a in attachments} - {id(a) for a in failed}
        record.attachments = [a for a in record.attachments if id(a) not in gone]
        await asyncio.to_thread(self._cache(config).save, record)
        return failed

    async def report_record(self, record: CacheRecord, config: MultusConfig, pod: Object) -> None:
        """Write ``pod``'s network-status from what ``record`` holds (what is attached)."""
        from multihome.networks.status import network_statuses, serialise

        source = self._source(config)
        if source is None:
            return
        done = [a for a in record.attachments if a.result is not None]
        infos = await asyncio.to_thread(
            lambda: [_device_info(a.capability_args.get("CNIDeviceInfoFile")) for a in done]
        )
        statuses = []
        for cached, info in zip(done, infos, strict=True):
            assert cached.result is not None
            statuses += network_statuses(
                Result.parse(cached.result),
                name=cached.network,
                default=cached.primary,
                ifname=cached.ifname,
                device_info=info,
            )
        plan = _sandbox_plan(record)
        # A write still owed to the ADD is older than this one: it must not land after it.
        cache = self._cache(config)
        await statuswrites.drop(cache.directory, record.container_id)
        await self._write_status(source, pod, plan, serialise(statuses), cache=cache, config=config)

    # -- DEL --------------------------------------------------------------------------
    async def delete(self, request: Request, config: MultusConfig) -> CacheRecord | None:
        """DEL a container's attachments; the cached record it deleted, if there was one."""
        cache = self._cache(config)
        cached = record = await asyncio.to_thread(cache.load, request.container_id)
        source = self._source(config)
        if record is None:
            record = await self._record_without_cache(request, config, source)
        # The status, while the delegates' DELs run: what the ADD still owes is
        # dropped once a write of it in progress is done, then the status is
        # cleared.  DEL answers once both are done, so the clear never lands
        # after a later ADD's status.  A failed DEL clears it too: the sandbox
        # is going away, and the runtime retries the DEL.
        status = asyncio.ensure_future(
            self._end_status(cache, request.container_id, source, record)
        )
        if record is None:
            await status
            return None
        record.netns = request.netns or record.netns
        try:
            await self._delete_attachments(record, config, request, cache=cache, cached=cached)
        except BaseException as err:
            if isinstance(err, asyncio.CancelledError):
                status.cancel()
            else:
                await status
            raise
        await status
        return cached

    async def _end_status(
        self,
        cache: AttachmentCache,
        container_id: str,
        source: Source | None,
        record: CacheRecord | None,
    ) -> None:
        try:
            await statuswrites.drop(cache.directory, container_id)
        except OSError as err:
            # A cache dir gone read-only: no writer can take the status lock there
            # either, so nothing can land late; the DEL goes on.
            log.warning("container %s: cannot drop its pending status: %s", container_id, err)
        if source is not None and record is not None and record.pod_name:
            await self._clear_status(source, record)

    async def _delete_attachments(
        self,
        record: CacheRecord,
        config: MultusConfig,
        request: Request,
        *,
        cache: AttachmentCache,
        cached: CacheRecord | None,
    ) -> None:
        failed = await self._delete_record(record, config, cni_path=request.path, keep_failed=True)
        if failed:
            # A record made up from the configuration is never saved: the
            # retry makes it up again, and a DEL must not create state.
            if cached is not None:
                record.attachments = failed
                await asyncio.to_thread(cache.save, record)
            first = failed[0]
            raise CNIError(
                Code.TRY_AGAIN_LATER,
                f"pod {record.pod}: failed to delete network {first.network!r} ({first.ifname})",
                "the runtime retries DEL; what failed stays cached until a DEL succeeds",
            )
        await asyncio.to_thread(cache.remove, request.container_id)

    async def _clear_status(self, source: Source, record: CacheRecord) -> None:
        # Only the incarnation this sandbox belonged to: a pod recreated
        # under the same name (a StatefulSet's) keeps its network-status.
        # Best effort, and bounded: a DEL answers whatever the API does.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.status_budget):
                await _quietly(source.set_network_status(_sandbox_pod(record), None))

    async def _record_without_cache(
        self, request: Request, config: MultusConfig, source: Source | None
    ) -> CacheRecord | None:
        """What an ADD would have run, when its record is gone (best effort).

        The configuration's networks (the cluster network, defaultNetworks),
        and the pod's own when the source has this incarnation at hand (a
        watch cache, the manifest files): a DEL never waits for a pod and
        never asks the API for one.
        """
        pod = _pod_at_hand(source, request)
        try:
            plan, _ = await self._plan(source, config, request, pod)
        except CNIError as err:
            log.info(
                "container %s: nothing cached and no plan (%s): nothing to delete",
                request.container_id,
                err,
            )
            return None
        log.info(
            "container %s: nothing cached, deleting what the configuration names",
            request.container_id,
        )
        return _record(request, config, plan)

    async def _delete_record(
        self,
        record: CacheRecord,
        config: MultusConfig,
        *,
        cni_path: Sequence[str],
        keep_failed: bool = False,
        started_only: bool = False,
    ) -> list[CachedAttachment]:
        """DEL the attachments in reverse order; those that failed and a retry may fix.

        ``started_only``: skip attachments this process never started (a
        rollback); after a crash nobody knows, so everything is deleted.
        """
        failed: list[CachedAttachment] = []
        # A netns that is gone is passed on as empty: plugins then release
        # what they hold outside it (IPAM leases, host-side links).
        netns = record.netns if record.netns and os.path.exists(record.netns) else ""
        for cached in reversed(record.attachments):
            if started_only and cached.state == "planned":
                continue
            try:
                conf = NetConfList.parse(cached.config)
                prev = Result.parse(cached.result) if cached.result else None
            except CNIError as err:
                log.warning(
                    "pod %s: cannot delete %s: cached config unreadable: %s",
                    record.pod,
                    cached.network,
                    err,
                )
                continue
            rt = RuntimeConf(
                container_id=record.container_id,
                netns=netns,
                ifname=cached.ifname,
                args=tuple(cached.cni_args),
                capability_args=cached.capability_args,
                cni_path=(config.bin_dir, *cni_path),
            )
            try:
                await del_network_list(conf, rt, prev_result=prev, executor=self.executor)
            except CNIError as err:
                log.warning(
                    "pod %s: DEL of %s (%s) failed: %s",
                    record.pod,
                    cached.network,
                    cached.ifname,
                    err,
                )
                if keep_failed and err.code in _RETRYABLE:
                    failed.insert(0, cached)
                elif err.code not in _RETRYABLE:
                    await _remove_leftover(record, cached, netns)
            except Exception as err:
                # A bug for one network must not keep the others (the cluster
                # network too) from being released; a retry would fail alike.
                log.warning(
                    "pod %s: DEL of %s (%s) failed unexpectedly: %r",
                    record.pod,
                    cached.network,
                    cached.ifname,
                    err,
                )
            info = cached.capability_args.get("CNIDeviceInfoFile")
            if isinstance(info, str):
                await asyncio.to_thread(devicefiles.remove, info)
        return failed

    # -- CHECK ------------------------------------------------------------------------
    async def check(self, request: Request, config: MultusConfig) -> None:
        record = await asyncio.to_thread(self._cache(config).load, request.container_id)
        if record is None:
            raise CNIError(
                Code.CONTAINER_UNKNOWN,
                f"container {request.container_id} has no attachments cached on this node",
                "CHECK needs a successful ADD first",
            )
        try:
            links = await podnet.read_links(request.netns)
        except (OSError, TimeoutError) as err:
            raise CNIError(
                Code.IO_FAILURE, f"pod {record.pod}: cannot look into {request.netns}: {err}"
            ) from err
        for cached in record.attachments:
            where = f"pod {record.pod}: network {cached.network!r} ({cached.ifname})"
            conf = NetConfList.parse(cached.config)
            prev = Result.parse(cached.result) if cached.result else None
            sandboxed = (
                prev is None or any(i.sandbox for i in prev.interfaces) or not prev.interfaces
            )
            if sandboxed and prev is not None and prev.interfaces and cached.ifname not in links:
                raise CNIError(
                    Code.IO_FAILURE,
                    f"{where}: interface {cached.ifname} is missing from {request.netns}",
                    "delete and recreate the pod; something removed the interface",
                )
            if not versions.allows_check(conf.cni_version):
                continue
            rt = RuntimeConf(
                container_id=record.container_id,
                netns=request.netns,
                ifname=cached.ifname,
                args=tuple(cached.cni_args),
                capability_args=cached.capability_args,
                cni_path=(config.bin_dir, *request.path),
            )
            try:
                await check_network_list(conf, rt, prev_result=prev, executor=self.executor)
            except CNIError as err:
                raise err.prefixed(where) from None
        # The networks are fine; a network-status the ADD could not write is tried again.
        await statuswrites.attempt(
            self._cache(config).directory,
            request.container_id,
            self._pending_source,
            budget=self.status_budget,
        )

    # -- GC and STATUS ------------------------------------------------------------------
    async def gc(self, request: Request, config: MultusConfig) -> None:
        raw = config.raw
        valid_list = raw.get("cni.dev/valid-attachments") if raw is not None else None
        if not isinstance(valid_list, list):
            raise CNIError(
                Code.INVALID_NETWORK_CONFIG,
                "GC needs 'cni.dev/valid-attachments' in the configuration",
                'a list of {"containerID": ..., "ifname": ...} objects, as the runtime sends it',
            )
        valid = {
            (str(a.get("containerID", "")), str(a.get("ifname", "")))
            for a in valid_list
            if isinstance(a, dict)
        }
        cache = self._cache(config)
        # The node lock: no command starts meanwhile, and those in flight are
        # known; their containers count as valid even when the runtime's list,
        # taken before they started, does not name them yet.
        async with locks.gc_lock(cache.directory) as in_flight:
            for container_id in sorted(in_flight):
                log.info("GC: container %s has a command in flight: kept", container_id)
            live = {cid for cid, _ in valid} | in_flight
            for container_id in cache.container_ids():
                if container_id not in live:
                    await self._collect(cache, container_id, config, request)
            # The cluster network is the runtime's interface: eth0 unless told otherwise.
            in_flight_pairs = {(cid, request.ifname or "eth0") for cid in in_flight}
            cluster = await self._cluster_network(request, config)
            if cluster is not None:
                await gc_network_list(
                    cluster.conf,
                    valid_attachments=sorted(valid | in_flight_pairs),
                    cni_path=(config.bin_dir, *request.path),
                    executor=self.executor,
                )
        await self.write_pending(cache.directory)

    async def _collect(
        self, cache: AttachmentCache, container_id: str, config: MultusConfig, request: Request
    ) -> None:
        record = await asyncio.to_thread(cache.load, container_id)
        if record is None:
            return
        log.info(
            "GC: container %s (pod %s) is gone: deleting its attachments",
            container_id,
            record.pod,
        )
        failed = await self._delete_record(record, config, cni_path=request.path, keep_failed=True)
        if failed:
            record.attachments = failed
            await asyncio.to_thread(cache.save, record)
        else:
            await asyncio.to_thread(cache.remove, container_id)

    async def status(self, request: Request, config: MultusConfig) -> None:
        await _wait_for_readiness(config.readiness_indicator_file, READINESS_WAIT)
        await self.write_pending(self._cache(config).directory)
        cluster = await self._cluster_network(request, config)
        if cluster is not None:
            await status_network_list(
                cluster.conf, cni_path=(config.bin_dir, *request.path), executor=self.executor
            )

    async def _cluster_network(self, request: Request, config: MultusConfig) -> Attachment | None:
        source = self._source(config)
        plan, findings = await self._plan(
            source, config, dataclasses.replace(request, ifname=request.ifname or "eth0"), None
        )
        if plan.cluster_network is None:
            error = to_cni_error(findings)
            if error is not None:
                raise error
        return plan.cluster_network


def _device_info(path: object) -> dict[str, Any] | None:
    return devicefiles.read(path) if isinstance(path, str) and path else None


def _valid_type(plugin_type: str) -> bool:
    try:
        check_plugin_type(plugin_type)
    except CNIError:
        return False
    return True


def _pod_at_hand(source: Source | None, request: Request) -> Object | None:
    """The request's pod if ``source`` has it without a wait or a request, and it is the
    incarnation the sandbox belonged to (K8S_POD_UID, when the runtime sent one)."""
    from multihome.cluster.kube import is_static

    k8s = request.k8s
    peek = getattr(source, "cached_pod", None)
    if peek is None or not k8s.name:
        return None
    try:
        pod: Object | None = peek(k8s.namespace or "default", k8s.name)
    except ManifestError:
        return None
    if pod is None:
        return None
    uid = (pod.get("metadata") or {}).get("uid") or ""
    if k8s.uid and uid and uid != k8s.uid and not is_static(pod):
        return None
    return copy.deepcopy(pod)


def _sandbox_pod(record: CacheRecord) -> Object:
    """The pod a record's sandbox belonged to, as far as a status write needs it."""
    meta = {"namespace": record.pod_namespace, "name": record.pod_name, "uid": record.pod_uid}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta}


def _wants_devices(nads: Any) -> bool:
    """Some NAD names a resourceName: only then are the kubelet and DRA asked (as upstream)."""
    return any(
        ((nad or {}).get("metadata") or {}).get("annotations", {}).get(RESOURCE_NAME_ANNOTATION)
        for nad in nads
    )


async def _remove_leftover(record: CacheRecord, cached: CachedAttachment, netns: str) -> None:
    """The interface of an attachment whose DEL can never succeed, removed by hand.

    A plugin whose DEL fails for good may leave its interface in the pod
    (the bridge plugin keeps its veth when its IPAM configuration is bad,
    and its DEL then fails on the same configuration): no retry releases
    it, so it is removed here.  A device that cannot be deleted (a physical
    one) returns to the host with the namespace.
    """
    if not netns or not cached.ifname:
        return
    try:
        removed = await podnet.delete_link(netns, cached.ifname)
    except (OSError, TimeoutError):
        return
    if removed:
        log.warning(
            "pod %s: removed interface %s left by the failed DEL of %s",
            record.pod,
            cached.ifname,
            cached.network,
        )


def _record(
    request: Request, config: MultusConfig, plan: PodPlan, pod: Object | None = None
) -> CacheRecord:
    """What the attachment cache keeps of a plan: enough to DEL it with nothing else.

    The pod's UID is that of the API object the ADD reported to (a static
    pod's mirror has its own), so that DEL touches that object only.
    """
    return CacheRecord(
        container_id=request.container_id,
        netns=request.netns,
        ifname=request.ifname,
        cni_version=config.cni_version,
        pod_namespace=plan.namespace,
        pod_name=plan.name,
        pod_uid=str(((pod or {}).get("metadata") or {}).get("uid") or plan.uid),
        attachments=[_cached(a) for a in plan.attachments],
        multus_config=config.raw.text if config.raw is not None else "",
        cni_path=list(request.path),
    )


def _cached(attachment: Attachment, origin: str = "") -> CachedAttachment:
    from . import hotplug

    return CachedAttachment(
        network=attachment.name,
        ifname=attachment.ifname,
        config=attachment.conf.text,
        cni_args=list(attachment.cni_args),
        capability_args=dict(attachment.capability_args),
        primary=attachment.is_default,
        wish=hotplug.wish_of(attachment.selection) if hotplug.is_wished(attachment) else "",
        origin=origin,
    )


def _sandbox_plan(record: CacheRecord, attachments: Sequence[Attachment] = ()) -> PodPlan:
    """A plan of ``attachments`` for ``record``'s sandbox (a hot-plug step's)."""
    from multihome.networks.attachment import PodPlan

    return PodPlan(
        record.pod_namespace,
        record.pod_name,
        record.pod_uid,
        record.container_id,
        tuple(attachments),
    )


def request_of(record: CacheRecord) -> Request:
    """The ADD request a record's sandbox was attached with, as far as a re-plan needs it."""
    primary = next((a for a in record.attachments if a.primary), None)
    return Request(
        command="ADD",
        container_id=record.container_id,
        netns=record.netns,
        ifname=record.ifname,
        args=tuple((str(k), str(v)) for k, v in (primary.cni_args if primary else [])),
        path=tuple(record.cni_path),
    )


def _as_result(link: podnet.LinkState | None, netns: str) -> Result:
    """An interface as the namespace shows it, in the shape of a result."""
    if link is None:
        return Result(versions.LATEST)
    return Result(
        versions.LATEST,
        interfaces=(Interface(name=link.name, mac=link.mac, sandbox=netns),),
        ips=tuple(IPConfig(address=a, interface=0) for a in link.addresses),
    )


def _not_applied(plan: PodPlan, attachment: Attachment, found: list[Finding]) -> CNIError:
    """What the pod asked for and did not get, and which capability is likely missing."""
    selection = attachment.selection
    asked = {"mac"} if selection and selection.mac else set()
    asked |= {"ips"} if selection and selection.ips else set()
    missing = sorted(asked - attachment.conf.capabilities)
    hint = (
        f"no plugin of {attachment.name} declares the capability {', '.join(missing)}; "
        "add one that does (tuning for mac, static IPAM for ips) to the NAD's chain"
        if missing
        else "a plugin of the chain ignored the request"
    )
    return CNIError(
        Code.INVALID_NETWORK_CONFIG,
        f"{_where(plan, attachment)}: " + "; ".join(f.message for f in found),
        hint,
    )


def _all_failed(plan: PodPlan, failures: Sequence[BaseException]) -> BaseException:
    """One error for delegates that failed side by side: every message, in annotation order.

    Anything but a `CNIError` (a cancellation, a bug) wins as it is; the code
    is the first failure's.
    """
    plain = [f for f in failures if not isinstance(f, CNIError)]
    if plain or len(failures) == 1:
        return plain[0] if plain else failures[0]
    cni = [f for f in failures if isinstance(f, CNIError)]
    pod = f"pod {plan.namespace}/{plan.name}: "
    messages = [e.msg.removeprefix(pod) for e in cni]
    details = "; ".join(dict.fromkeys(e.details for e in cni if e.details))
    return CNIError(
        cni[0].code, f"{pod}{len(cni)} networks failed: " + "; ".join(messages), details
    )


def _where(plan: PodPlan, attachment: Attachment) -> str:
    return (
        f"pod {plan.namespace}/{plan.name}: failed to add network {attachment.name!r} "
        f"as {attachment.ifname}"
    )


async def _quietly(awaitable: Awaitable[None]) -> None:
    """Reports never fail the operation they report on."""
    try:
        await awaitable
    except Exception as err:
        log.warning("could not report to the cluster: %s", err)


async def _wait_for_readiness(path: str, timeout: float) -> None:
    if not path:
        return
    target = Path(path)
    deadline = time.monotonic() + timeout
    while not target.exists():
        if time.monotonic() >= deadline:
            raise CNIError(
                Code.TRY_AGAIN_LATER,
                f"the cluster network is not ready: readiness indicator file {path} does not exist",
                f"waited {timeout:.0f} s; is the cluster network's own pod running on this node?",
            )
        await asyncio.sleep(0.5)
