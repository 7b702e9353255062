"""Hot-plug: one delegate network added to or removed from a running pod (``POST /delegate``).

Upstream's thick daemon serves this for controllers that change a pod's
networks after it started (the dynamic-networks controller): the request
carries one delegate CNI configuration, the pod's sandbox (``CNI_*``) and
``interfaceAttributes`` (``ips``, ``mac``, ``cni-args``), and the daemon
runs that delegate alone (research/multus-features.md §5.4).

Upstream keeps no record of what it hot-plugged, so the pod's DEL never
removes it and its IPAM lease leaks.  multihome adds the attachment to the
pod's attachment record (when the pod was attached by multihome), so the
pod's DEL removes it like any other network; a hot-plug DEL takes it out
again.  Unlike upstream, the daemon's configuration is not written over the
delegate's configuration: the delegate is a plugin's config, not multus'.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from multihome.cluster.local import ManifestError
from multihome.cluster.source import Source
from multihome.cni.config import NetConf, NetConfList, RawJSON
from multihome.cni.errors import CNIError, Code
from multihome.cni.invoking import add_network_list, check_network_list, del_network_list
from multihome.cni.process import Exec, RuntimeConf
from multihome.cni.request import Request
from multihome.cni.result import Result
from multihome.engine.cache import AttachmentCache, CachedAttachment
from multihome.engine.hotplug import DELEGATE
from multihome.networks.nad import parse_config_text

log = logging.getLogger(__name__)


async def hot_plug(
    request: Request,
    *,
    attributes: Mapping[str, Any] | None,
    source: Source | None,
    cache: AttachmentCache,
    bin_dir: str,
    executor: Exec,
) -> Result | None:
    """Run the delegate of ``request.stdin`` for ``request.command``; the ADD's result."""
    conf = _delegate_conf(request.stdin, attributes)
    k8s = request.k8s
    pod_name = f"{k8s.namespace or 'default'}/{k8s.name}" if k8s.name else ""
    where = f"pod {pod_name or request.container_id}: network {conf.name!r} ({request.ifname})"
    if request.command in ("ADD", "DEL") and source is not None and k8s.name:
        try:
            pod = await source.get_pod(k8s.namespace or "default", k8s.name)
        except ManifestError as err:
            raise CNIError(Code.IO_FAILURE, f"failed to read the manifests: {err}") from err
        if pod is None:
            raise CNIError(
                Code.CONTAINER_UNKNOWN,
                f"pod {pod_name} does not exist",
                "a network can be hot-plugged only into a running pod",
            )
    rt = RuntimeConf(
        container_id=request.container_id,
        netns=request.netns,
        ifname=request.ifname,
        args=request.args,
        capability_args=_capability_args(attributes),
        cni_path=(bin_dir, *request.path),
    )
    record = cache.load(request.container_id) if request.container_id else None
    cached = next(
        (a for a in (record.attachments if record else []) if a.ifname == request.ifname), None
    )
    prev = Result.parse(cached.result) if cached is not None and cached.result else None

    if request.command == "ADD":
        if cached is not None:
            raise CNIError(
                Code.INVALID_ENV,
                f"{where}: the pod already has an interface {request.ifname} "
                f"from network {cached.network!r}",
                "choose another CNI_IFNAME, or DEL that network first",
            )
        try:
            result = await add_network_list(conf, rt, executor=executor)
        except BaseException as err:
            # A half-done ADD (failed, or cancelled at its deadline) is undone at
            # once: the caller may never send its DEL.
            await _quietly_delete(conf, rt, executor)
            if isinstance(err, CNIError):
                raise err.prefixed(f"{where}: hot-plug failed") from None
            raise
        if record is not None:
            record.attachments.append(
                CachedAttachment(
                    network=conf.name,
                    ifname=request.ifname,
                    config=conf.text,
                    cni_args=list(rt.args),
                    capability_args=dict(rt.capability_args),
                    state="added",
                    result=result.to_dict(),
                    # Not the annotation's: the hot-plug controller leaves it alone.
                    origin=DELEGATE,
                )
            )
            cache.save(record)
        log.info("%s: hot-plugged", where)
        return result
    if request.command == "DEL":
        try:
            await del_network_list(conf, rt, prev_result=prev, executor=executor)
        except CNIError as err:
            raise err.prefixed(f"{where}: hot-unplug failed") from None
        if record is not None and cached is not None:
            record.attachments.remove(cached)
            cache.save(record)
        log.info("%s: hot-unplugged", where)
        return None
    if request.command == "CHECK":
        try:
            await check_network_list(conf, rt, prev_result=prev, executor=executor)
        except CNIError as err:
            raise err.prefixed(where) from None
        return None
    raise CNIError(
        Code.INVALID_ENV,
        f"unknown cmd type: {request.command}",
        "/delegate serves ADD, DEL and CHECK",
    )


def _delegate_conf(stdin: bytes, attributes: Mapping[str, Any] | None) -> NetConfList:
    conf, is_list, findings = parse_config_text(stdin, default_name="", path="config")
    problems = [f for f in findings if f.severity == "error"]
    if conf is None or problems:
        first = problems[0] if problems else findings[0]
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            f"invalid delegate configuration: {first.message}",
            first.hint,
        )
    cni_args = (attributes or {}).get("cni-args")
    if cni_args:
        if not isinstance(cni_args, dict):
            raise CNIError(
                Code.INVALID_NETWORK_CONFIG,
                f"invalid interfaceAttributes: cni-args is {json.dumps(cni_args)}",
                "cni-args must be a JSON object",
            )
        conf = _with_cni_args(conf, cni_args, is_list=is_list)
    return conf


def _with_cni_args(conf: NetConfList, cni_args: Mapping[str, Any], *, is_list: bool) -> NetConfList:
    """``cni-args`` merged into ``args.cni`` of every plugin, as upstream does."""
    texts = []
    for plugin in conf.plugins:
        raw = plugin.raw
        args = raw.get("args")
        cni = args.get("cni") if isinstance(args, dict) else None
        if cni is not None and not isinstance(cni, dict):
            raise CNIError(
                Code.INVALID_NETWORK_CONFIG,
                f"invalid delegate configuration: args.cni of plugin {plugin.type!r} is not an "
                "object, so cni-args cannot be merged into it",
            )
        if isinstance(args, dict):
            merged_args = raw.member_object("args").edit({"cni": {**(cni or {}), **cni_args}})
            raw = raw.edit({"args": merged_args})
        else:
            raw = raw.edit({"args": {"cni": dict(cni_args)}})
        texts.append(raw.text)
    if not is_list:
        return NetConfList.from_conf(NetConf.parse(texts[0]))
    return NetConfList.parse(conf.raw.edit({"plugins": RawJSON("[" + ",".join(texts) + "]")}))


def _capability_args(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not attributes:
        return out
    ips = attributes.get("ips")
    if ips:
        if not isinstance(ips, list) or not all(isinstance(ip, str) for ip in ips):
            raise CNIError(
                Code.INVALID_NETWORK_CONFIG,
                f"invalid interfaceAttributes: ips is {json.dumps(ips)}",
                'ips must be a list of addresses with prefix, e.g. ["10.1.1.5/24"]',
            )
        out["ips"] = list(ips)
    mac = attributes.get("mac")
    if mac:
        if not isinstance(mac, str):
            raise CNIError(
                Code.INVALID_NETWORK_CONFIG,
                f"invalid interfaceAttributes: mac is {json.dumps(mac)}",
                'mac must be a string such as "02:00:00:00:00:01"',
            )
        out["mac"] = mac
    return out


async def _quietly_delete(conf: NetConfList, rt: RuntimeConf, executor: Exec) -> None:
    try:
        await del_network_list(conf, rt, executor=executor)
    except CNIError as err:
        log.warning("undoing a failed hot-plug of %s: %s", conf.name, err)
