"""The multus configuration: ``00-multus.conf``, the runtime's stdin to multihome.

Every key of upstream's ``NetConf`` (research/multus-features.md §1) is
read with upstream's defaults and types, and with Go's decoding rules: keys
match with any letter case, unknown keys are ignored, ``null`` leaves the
default.  A value of the wrong type is a `CNIError` naming the key, the value
and what would be valid (Multus fails the same way, less clearly).

multihome adds ``manifestDir`` (a directory of Pod and NAD manifests that
replaces the Kubernetes API), ``parallelDelegates`` and
``maxParallelDelegates``.  Keys that upstream documents but never
implemented (``allowTryDeleteOnErr``, ``cniConf``) are accepted and reported
in `MultusConfig.notices` so the caller can log them.  Keys of the thick
daemon's own file (``socketDir``, ``chrootDir``, ...) may appear here because
Multus merges that file into every request; they are left to the daemon.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from multihome.cni import version as versions
from multihome.cni.config import ASSUMED_VERSION, RawObject
from multihome.cni.errors import CNIError, Code

from . import gojson
from .findings import Finding, finding
from .nad import Network, parse_config_text

DEFAULT_CONF_DIR = "/etc/cni/multus/net.d"
DEFAULT_CNI_DIR = "/var/lib/cni/multus"
DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_MULTUS_NAMESPACE = "kube-system"
#: Upstream's four, and the daemon's ``info`` and ``warning``: the daemon copies its
#: own ``logLevel`` into the generated configuration, so both must take the same.
LOG_LEVELS = ("debug", "verbose", "info", "warning", "error", "panic")

_STRINGS = {
    "cniVersion": "cni_version",
    "name": "name",
    "type": "type",
    "kubeconfig": "kubeconfig",
    "clusterNetwork": "cluster_network",
    "confDir": "conf_dir",
    "cniDir": "cni_dir",
    "binDir": "bin_dir",
    "multusNamespace": "multus_namespace",
    "readinessindicatorfile": "readiness_indicator_file",
    "auxiliaryCNIChainName": "auxiliary_cni_chain_name",
    "logFile": "log_file",
    "logLevel": "log_level",
    "manifestDir": "manifest_dir",
}
_BOOLS = {
    "namespaceIsolation": "namespace_isolation",
    "retryDeleteOnError": "retry_delete_on_error",
    "logToStderr": "log_to_stderr",
    "parallelDelegates": "parallel_delegates",
}
_STRING_LISTS = {"defaultNetworks": "default_networks", "systemNamespaces": "system_namespaces"}
_OTHER = (
    "delegates",
    "globalNamespaces",
    "logOptions",
    "capabilities",
    "runtimeConfig",
    "prevResult",
    "maxParallelDelegates",
)
#: Documented upstream, read by nothing.
DEAD_KEYS = {
    "allowTryDeleteOnErr": "upstream documents it but never reads it; DEL retries "
    "follow retryDeleteOnError",
    "cniConf": "written by upstream's thin_entrypoint but never read; use confDir",
}
_FIELDS = (*_STRINGS, *_BOOLS, *_STRING_LISTS, *_OTHER, *DEAD_KEYS)
#: Every key of the multus configuration this module reads or reports.
KNOWN_KEYS = _FIELDS


#: Networks attached at once by default: enough for a pod's usual handful in
#: the time of one, and a bound on the processes one request starts.
DEFAULT_MAX_PARALLEL_DELEGATES = 8


@dataclass(frozen=True)
class LogOptions:
    max_age: int | None = None
    max_size: int | None = None
    max_backups: int | None = None
    compress: bool | None = None


@dataclass(frozen=True, eq=False)
class MultusConfig:
    cni_version: str
    name: str
    type: str = ""
    kubeconfig: str = ""
    cluster_network: str = ""
    default_networks: tuple[str, ...] = ()
    #: Inline delegate configurations (used when ``clusterNetwork`` is empty); [0] is the
    #: cluster network.
    delegates: tuple[Network, ...] = ()
    conf_dir: str = DEFAULT_CONF_DIR
    cni_dir: str = DEFAULT_CNI_DIR
    bin_dir: str = DEFAULT_BIN_DIR
    namespace_isolation: bool = False
    global_namespaces: tuple[str, ...] = ("default",)
    system_namespaces: tuple[str, ...] = ("kube-system",)
    multus_namespace: str = DEFAULT_MULTUS_NAMESPACE
    readiness_indicator_file: str = ""
    retry_delete_on_error: bool = False
    auxiliary_cni_chain_name: str = ""
    log_file: str = ""
    log_level: str = "panic"
    log_to_stderr: bool = True
    log_options: LogOptions | None = None
    #: Not read by multihome: the runtime uses it to choose what to put in runtimeConfig.
    capabilities: Mapping[str, bool] = field(default_factory=dict)
    #: What the runtime injected for the capabilities above: the cluster network's, only.
    runtime_config: Mapping[str, Any] = field(default_factory=dict)
    manifest_dir: str = ""
    parallel_delegates: bool = True
    #: At most this many delegates run at once when parallelDelegates is on; 0: no limit.
    #: Each delegate is a chain of plugin processes (and their IPAM plugins).
    max_parallel_delegates: int = DEFAULT_MAX_PARALLEL_DELEGATES
    #: Things the caller should log (dead keys, an unknown logLevel).
    notices: tuple[Finding, ...] = ()
    #: Keys that matched nothing (ignored, as upstream ignores them).
    unknown_keys: tuple[str, ...] = ()
    raw: RawObject | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, data: str | bytes | RawObject) -> MultusConfig:
        """Read a configuration; a `CNIError` names the first bad key, its value and why."""
        if isinstance(data, RawObject):
            raw = data
        else:
            try:
                raw = RawObject.parse(data)
            except (ValueError, UnicodeDecodeError, RecursionError) as err:
                raise CNIError(
                    Code.DECODE_FAILURE, f"failed to decode the multus configuration: {err}"
                ) from err
        members = [(key, raw.get(key)) for key in raw]
        matched = gojson.match_fields(members, _FIELDS)
        written = {name: key for key, name in matched.folded}
        values = matched.values
        kwargs: dict[str, Any] = {}
        notices: list[Finding] = []

        for key, attr in _STRINGS.items():
            if key in values:
                kwargs[attr] = _string(values[key], key)
        for key, attr in _BOOLS.items():
            if key in values:
                kwargs[attr] = _bool(values[key], key)
        for key, attr in _STRING_LISTS.items():
            if key in values:
                kwargs[attr] = _strings(values[key], key)

        if "globalNamespaces" in values:
            kwargs["global_namespaces"] = _global_namespaces(values["globalNamespaces"])
        if "logOptions" in values:
            kwargs["log_options"] = _log_options(values["logOptions"])
        if "capabilities" in values:
            kwargs["capabilities"] = _capabilities(values["capabilities"])
        if "runtimeConfig" in values:
            runtime_config = values["runtimeConfig"]
            if not isinstance(runtime_config, dict):
                _bad("runtimeConfig", runtime_config, "an object")
            kwargs["runtime_config"] = runtime_config
        if "maxParallelDelegates" in values:
            limit = values["maxParallelDelegates"]
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
                _bad("maxParallelDelegates", limit, "an integer >= 0 (0: no limit)")
            kwargs["max_parallel_delegates"] = limit
        if "delegates" in values:
            kwargs["delegates"], warnings = _delegates(raw, written.get("delegates", "delegates"))
            notices.extend(warnings)

        for key, reason in DEAD_KEYS.items():
            if key in values:
                notices.append(finding("config-key-ignored", key, f"{key!r} is ignored: {reason}"))
        level = kwargs.get("log_level", "panic")
        if level and level.lower() not in LOG_LEVELS:
            notices.append(
                finding(
                    "config-log-level-unknown",
                    "logLevel",
                    f"logLevel {level!r} is not a level; the level stays unchanged",
                )
            )

        name = kwargs.get("name", "")
        if not name:
            raise CNIError(
                Code.INVALID_NETWORK_CONFIG,
                "missing network name in the multus configuration",
                'set "name", e.g. "multus-cni-network"',
            )
        cni_version = kwargs.get("cni_version", "")
        if not cni_version:
            # skel reads a missing version as 0.1.0: the runtime then gets 0.1.0 results.
            kwargs["cni_version"] = cni_version = ASSUMED_VERSION
            notices.append(
                finding(
                    "cni-version-assumed",
                    "cniVersion",
                    f"the multus configuration has no cniVersion: version {cni_version} is "
                    "assumed, and the runtime gets results in it",
                )
            )
        versions.check_supported(cni_version, "cniVersion of the multus configuration")
        if not kwargs.get("cluster_network") and not kwargs.get("delegates"):
            raise CNIError(
                Code.INVALID_NETWORK_CONFIG,
                "the multus configuration names no cluster network: at least one "
                "delegate/clusterNetwork must be specified",
                'set "clusterNetwork" (a NAD, a CNI network name or a file path) or '
                '"delegates" (inline CNI configurations)',
            )
        return cls(
            notices=tuple(notices),
            unknown_keys=tuple(matched.unknown),
            raw=raw,
            **kwargs,
        )


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def _bad(key: str, value: Any, valid: str) -> NoReturn:
    raise CNIError(
        Code.INVALID_NETWORK_CONFIG,
        f"invalid multus configuration: {key!r} is {_show(value)}",
        f"{key!r} must be {valid}",
    )


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str):
        _bad(key, value, "a string")
    return str(value)


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        _bad(key, value, "true or false")
    return bool(value)


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _bad(key, value, "a list of strings")
    return tuple(value)


def _global_namespaces(value: Any) -> tuple[str, ...]:
    # Upstream takes a comma-separated string; a list is accepted too.
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    elif isinstance(value, str):
        if not value.strip():
            return ("default",)
        items = [v.strip() for v in value.split(",")]
    else:
        _bad("globalNamespaces", value, "a comma-separated string of namespaces")
    return tuple(v for v in items if v)


def _log_options(value: Any) -> LogOptions:
    if not isinstance(value, dict):
        _bad("logOptions", value, "an object with maxAge, maxSize, maxBackups and compress")
    fields = gojson.match_fields(value, ("maxAge", "maxSize", "maxBackups", "compress")).values
    ints = {}
    for key in ("maxAge", "maxSize", "maxBackups"):
        number = fields.get(key)
        if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
            _bad(f"logOptions.{key}", number, "an integer")
        ints[key] = number
    compress = fields.get("compress")
    if compress is not None and not isinstance(compress, bool):
        _bad("logOptions.compress", compress, "true or false")
    return LogOptions(ints["maxAge"], ints["maxSize"], ints["maxBackups"], compress)


def _capabilities(value: Any) -> dict[str, bool]:
    if not isinstance(value, dict) or not all(isinstance(v, bool) for v in value.values()):
        _bad("capabilities", value, "an object of capability names to true or false")
    return dict(value)


def _delegates(raw: RawObject, key: str) -> tuple[tuple[Network, ...], list[Finding]]:
    """The inline delegates, and the warnings about them (e.g. no cniVersion)."""
    value = raw.get(key)
    if not isinstance(value, list):
        _bad("delegates", value, "a list of CNI configurations")
    out = []
    warnings: list[Finding] = []
    for index, text in enumerate(raw.array_items_text(key)):
        path = f"delegates[{index}]"
        # A delegate needs a name of its own: there is no NAD to take one from.
        conf, is_list, problems = parse_config_text(text, default_name="", path=path)
        errors = [f for f in problems if f.severity == "error"]
        if conf is None or errors:
            first = errors[0] if errors else problems[0]
            raise CNIError(
                Code.INVALID_NETWORK_CONFIG,
                f"invalid multus configuration: failed to load delegate {index} config: "
                f"{first.message}",
                first.hint,
            )
        warnings.extend(problems)
        out.append(Network(conf.name, conf, is_list, source=path))
    return tuple(out), warnings
