"""Networks resolved to the delegate configuration that attaches them.

A pod's networks are named three ways: NetworkAttachmentDefinitions (NADs,
from the selection and default-network annotations), the multus config's
``clusterNetwork``/``defaultNetworks`` (a NAD, a CNI network name, or a
file), and inline ``delegates``.  Each resolves to a `Network`: a display
name (``namespace/nad`` for NADs, as Multus shows it in network-status) and a
`NetConfList` whose bytes are the user's bytes.

A NAD's ``spec.config`` is a single config or a list (NPWG §3.4): when it has
no ``name`` (or an empty one) the NAD's name is filled in (§3.4.2) by
rewriting only that member -- Multus re-marshals the whole object instead,
sorting keys and turning numbers into floats.  An empty ``spec.config``
means the file in ``confDir`` whose network name is the NAD's (`confdir`).

Lookups go through a callable (`NadLookup`), so this module reads nothing
itself: the engine passes its watch cache, tests pass a dict.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from multihome.cni import version as versions
from multihome.cni.config import NetConf, NetConfList, RawObject
from multihome.cni.errors import CNIError

from . import confdir, names
from .confdir import ConfFiles
from .findings import Finding, Findings, finding

RESOURCE_NAME_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"

#: ``(namespace, name) -> NAD object or None``: how the model finds NADs.
NadLookup = Callable[[str, str], Mapping[str, Any] | None]


@dataclass(frozen=True, eq=False)
class Network:
    """A network and the delegate configuration that attaches a pod to it."""

    #: ``namespace/nad`` for a NAD; the CNI network name for files and inline delegates.
    name: str
    conf: NetConfList
    #: A configuration list (run as a chain) rather than a single configuration.
    is_list: bool
    #: The NAD's ``k8s.v1.cni.cncf.io/resourceName`` (device plugin or DRA resource).
    resource_name: str = ""
    #: Where the configuration came from: ``nad[ns/name]``, a file path, ``delegates[0]``.
    source: str = ""


def nad_path(namespace: str, name: str) -> str:
    return f"nad[{namespace}/{name}]"


def no_nads(namespace: str, name: str) -> Mapping[str, Any] | None:
    """A `NadLookup` for hosts without Kubernetes: no NAD exists."""
    return None


def _plain_file_name(value: str) -> bool:
    return bool(value) and value not in (".", "..") and not any(c in value for c in "/\\\0")


def check_conf(conf: NetConfList, *, is_list: bool, path: str) -> list[Finding]:
    """What must hold of any delegate configuration before multihome runs it.

    Its version is one multihome speaks, and every plugin and IPAM ``type``
    is a plain file name: a NAD must not make the node run an arbitrary
    binary (design.md), and libcni would look a path up anyway.
    """
    findings = Findings()
    if not conf.declared_version:
        findings.add(
            "cni-version-assumed",
            f"{path}.cniVersion",
            f"network {conf.name!r} has no cniVersion: version {conf.cni_version} is assumed",
        )
    if conf.cni_version not in versions.ALL:
        findings.add(
            "cni-version-unsupported",
            f"{path}.cniVersion",
            f"network {conf.name!r} has cniVersion {conf.cni_version!r}",
        )
    for index, plugin in enumerate(conf.plugins):
        plugin_path = f"{path}.plugins[{index}]" if is_list else path
        if not _plain_file_name(plugin.type):
            findings.add(
                "plugin-type-invalid",
                f"{plugin_path}.type",
                f"plugin type {plugin.type!r} of network {conf.name!r} is not a plain file name",
            )
        ipam = plugin.raw.get("ipam")
        ipam_type = ipam.get("type") if isinstance(ipam, dict) else None
        if ipam_type is not None and (
            not isinstance(ipam_type, str) or not _plain_file_name(ipam_type)
        ):
            findings.add(
                "plugin-type-invalid",
                f"{plugin_path}.ipam.type",
                f"IPAM type {json.dumps(ipam_type)} of network {conf.name!r} is not a plain "
                "file name",
            )
    return findings.as_list()


def parse_config_text(
    text: str | bytes, *, default_name: str, path: str
) -> tuple[NetConfList | None, bool, list[Finding]]:
    """A delegate configuration from JSON text, its name filled in when missing.

    Returns ``(conf, is_list, findings)``; ``conf`` is None when the text is
    not a configuration (then the findings say why).
    """
    try:
        raw = RawObject.parse(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        reason = "it is nested too deeply" if isinstance(err, RecursionError) else str(err)
        return None, False, [_invalid(path, f"cannot parse the configuration: {reason}")]
    if raw.get("name") in (None, ""):
        raw = raw.edit({"name": default_name})
    is_list = not (isinstance(raw.get("type"), str) and raw.get("type"))
    try:
        if is_list:
            if "plugins" not in raw:
                return (
                    None,
                    False,
                    [_invalid(path, "the configuration has neither 'type' nor 'plugins'")],
                )
            conf = NetConfList.parse(raw)
        else:
            conf = NetConfList.from_conf(NetConf.parse(raw))
    except CNIError as err:
        message = f"{err.msg} ({err.details})" if err.details else err.msg
        return None, is_list, [_invalid(path, message)]
    return conf, is_list, check_conf(conf, is_list=is_list, path=path)


def _invalid(path: str, message: str) -> Finding:
    return finding("nad-config-invalid", path, message)


def network_from_nad(
    nad: Mapping[str, Any], *, files: ConfFiles, conf_dir: str
) -> tuple[Network | None, list[Finding]]:
    """The delegate network a NAD object (a plain dict, as the API returns it) describes."""
    findings = Findings()
    meta = nad.get("metadata") if isinstance(nad, Mapping) else None
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(meta, Mapping) or not isinstance(name, str) or not name:
        findings.add("nad-invalid", "nad", "the NetworkAttachmentDefinition has no metadata.name")
        return None, findings.as_list()
    namespace = meta.get("namespace") or "default"
    if not isinstance(namespace, str):
        namespace = str(namespace)
    path = nad_path(namespace, name)
    annotations = meta.get("annotations") or {}
    resource_name = ""
    if isinstance(annotations, Mapping):
        value = annotations.get(RESOURCE_NAME_ANNOTATION, "")
        resource_name = value if isinstance(value, str) else ""
    spec = nad.get("spec")
    if spec is not None and not isinstance(spec, Mapping):
        findings.add("nad-invalid", f"{path}.spec", "spec is not an object")
        return None, findings.as_list()
    config = (spec or {}).get("config")
    display = f"{namespace}/{name}"

    if config is None or (isinstance(config, str) and not config.strip()):
        found, skipped = confdir.find_by_name(
            files, conf_dir, name=name, path=f"{path}.spec.config"
        )
        findings.extend(skipped)
        if found is None:
            findings.add(
                "nad-config-not-found",
                f"{path}.spec.config",
                f"NetworkAttachmentDefinition {display} has no spec.config and no file in "
                f"{conf_dir} has the network name {name!r}",
            )
            return None, findings.as_list()
        findings.extend(check_conf(found.conf, is_list=found.is_list, path=found.path))
        network = Network(display, found.conf, found.is_list, resource_name, found.path)
        return network, findings.as_list()

    if isinstance(config, Mapping):
        findings.add(
            "nad-config-not-string",
            f"{path}.spec.config",
            f"spec.config of {display} is an object; read as its JSON text",
        )
        config = json.dumps(config)
    if not isinstance(config, str):
        findings.add(
            "nad-invalid",
            f"{path}.spec.config",
            f"spec.config of {display} is {type(config).__name__}, not a JSON string",
        )
        return None, findings.as_list()
    conf, is_list, problems = parse_config_text(
        config, default_name=name, path=f"{path}.spec.config"
    )
    findings.extend(problems)
    if conf is None:
        return None, findings.as_list()
    return Network(display, conf, is_list, resource_name, path), findings.as_list()


def validate_nad(
    nad: Mapping[str, Any], *, files: ConfFiles = confdir.NO_FILES, conf_dir: str = ""
) -> list[Finding]:
    """Every finding about a NAD on its own (lint, an admission webhook for NADs)."""
    return network_from_nad(nad, files=files, conf_dir=conf_dir)[1]


def network_for(
    namespace: str,
    name: str,
    *,
    nads: NadLookup,
    files: ConfFiles,
    conf_dir: str,
    path: str,
) -> tuple[Network | None, list[Finding]]:
    """The network of the NAD ``namespace/name``; a `nad-not-found` error if it does not exist."""
    nad = nads(namespace, name)
    if nad is None:
        message = f"cannot find a network-attachment-definition ({name}) in namespace ({namespace})"
        return None, [finding("nad-not-found", path, message)]
    return network_from_nad(nad, files=files, conf_dir=conf_dir)


def is_nad_reference(value: str) -> bool:
    """Whether ``value`` is ``namespace/name`` of a NAD rather than a path."""
    namespace, _, name = value.partition("/")
    return (
        "/" not in name
        and names.label_problem(namespace) is None
        and names.subdomain_problem(name) is None
    )


def resolve_network(
    value: str,
    *,
    namespace: str,
    nads: NadLookup,
    files: ConfFiles,
    conf_dir: str,
    path: str,
) -> tuple[Network | None, list[Finding]]:
    """``clusterNetwork`` or a ``defaultNetworks`` entry, resolved in this order:

    1. ``name``: the NAD ``<namespace>/name`` (``namespace`` is multusNamespace),
       else the file in ``confDir`` whose network name is ``name``;
    2. ``ns/name`` (two Kubernetes names): the NAD ``ns/name``;
    3. anything else with a ``/`` is a path: a directory (its first
       configuration file) or a file (see `confdir`).

    Multus reads every value with a ``/`` as a path; ``ns/name`` is
    multihome's addition (a relative path is meaningless for a CNI plugin,
    whose working directory is the runtime's).
    """
    findings = Findings()
    if "/" not in value or is_nad_reference(value):
        ns, name = value.split("/", 1) if "/" in value else (namespace, value)
        nad = nads(ns, name)
        if nad is not None:
            return network_from_nad(nad, files=files, conf_dir=conf_dir)
        if "/" not in value and value:
            found, skipped = confdir.find_by_name(files, conf_dir, name=value, path=path)
            findings.extend(skipped)
            if found is not None:
                findings.extend(check_conf(found.conf, is_list=found.is_list, path=found.path))
                network = Network(found.conf.name, found.conf, found.is_list, source=found.path)
                return network, findings.as_list()
        where = f"no NetworkAttachmentDefinition {ns}/{name}"
        if "/" not in value:
            where += f" and no CNI config named {value!r} in {conf_dir}"
        findings.add("network-not-found", path, f"network {value!r}: {where}")
        return None, findings.as_list()
    found, skipped = confdir.load_path(files, value, path=path)
    findings.extend(skipped)
    if found is None:
        findings.add(
            "network-not-found", path, f"network {value!r}: no CNI configuration at that path"
        )
        return None, findings.as_list()
    findings.extend(check_conf(found.conf, is_list=found.is_list, path=found.path))
    return Network(
        found.conf.name, found.conf, found.is_list, source=found.path
    ), findings.as_list()


def isolation_problem(
    *, pod_namespace: str, target_namespace: str, global_namespaces: tuple[str, ...]
) -> str | None:
    """Why ``namespaceIsolation`` forbids the reference, or None when it is allowed."""
    if target_namespace == pod_namespace or target_namespace in global_namespaces:
        return None
    return (
        f"namespace isolation is enabled: pod is in namespace {pod_namespace!r} but refers to "
        f"namespace {target_namespace!r} (allowed: {', '.join(global_namespaces) or 'none'})"
    )
