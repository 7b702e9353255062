"""The daemon's configuration file, and how it overrides each request's configuration.

Upstream's ``multus-daemon -config FILE`` reads one JSON file three ways
(research/multus-features.md §5.1-5.3): the daemon's own settings, the
settings of config generation, and a per-request override in which every
top-level key of the file replaces the same key of the runtime's stdin.
multihome reads the same file the same way, so an existing
``daemon-config.json`` works unchanged.  Keys match with any letter case
(Go's decoding) and unknown keys are ignored: they may be multus
configuration keys (``confDir``, ``defaultNetworks``, ...) meant for the
override.  A value of the wrong type is a `DaemonConfigError` naming the key,
the value and what would be valid; the daemon exits 1 on it.

Two deliberate differences from upstream's override: ``cniVersion`` is not
overridden (the runtime gets its answer in the version it asked for, which
upstream's shim restores anyway), and the logging keys configure the daemon
once instead of being re-applied by every request (§5.8).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from multihome.cluster.kube import KubeConfig
from multihome.cni import version as versions
from multihome.cni.config import RawJSON, RawObject
from multihome.cni.errors import CNIError
from multihome.networks import gojson

from . import configschema as schema
from .configschema import DEFAULTS

#: Upstream's ``-config`` default.
DEFAULT_PATH = "/etc/cni/net.d/multus.d/daemon-config.json"
DEFAULT_SOCKET_DIR: str = DEFAULTS["socketDir"]
DEFAULT_SOCKET_NAME: str = DEFAULTS["socketName"]
#: The name upstream's Go shim connects to, for ``socketName``.
MULTUS_SOCKET_NAME = "multus.sock"
# A unix socket path holds at most this many bytes (sun_path minus the NUL).
_SUN_PATH_MAX = 107

# Keys of the file that never replace a request's key (see the module docstring).
_NOT_OVERRIDDEN = frozenset(
    k.casefold()
    for k in ("cniVersion", "logLevel", "logFile", "logToStderr", "logOptions", "logJSON")
)


#: Per-request overrides kept: a node's runtime sends the same configuration for
#: every pod, apart from a cluster network's runtimeConfig (port mappings, bandwidth).
_OVERRIDES_KEPT = 64


#: DaemonConfig's fields read straight from one key (the rest are derived in `parse`).
_ATTRS = {
    "daemon_socket_dir": "daemonSocketDir",
    "socket_name": "socketName",
    "metrics_port": "metricsPort",
    "metrics_address": "metricsAddress",
    "request_timeout": "requestTimeoutSeconds",
    "max_request_bytes": "maxRequestBytes",
    "shutdown_timeout": "shutdownTimeoutSeconds",
    "log_level": "logLevel",
    "log_file": "logFile",
    "log_to_stderr": "logToStderr",
    "log_json": "logJSON",
    "cni_version": "cniVersion",
    "cni_dir": "cniDir",
    "bin_dir": "binDir",
    "manifest_dir": "manifestDir",
    "cni_config_dir": "cniConfigDir",
    "multus_config_file": "multusConfigFile",
    "multus_autoconfig_dir": "multusAutoconfigDir",
    "multus_master_cni": "multusMasterCNI",
    "force_cni_version": "forceCNIVersion",
    "override_network_name": "overrideNetworkName",
    "readiness_indicator_file": "readinessindicatorfile",
    "node_name": "nodeName",
    "hotplug": "hotplug",
    "hotplug_resync": "hotplugResyncSeconds",
}


class DaemonConfigError(Exception):
    """The configuration file cannot be used; the message says which key and why."""


@dataclass(frozen=True)
class DaemonConfig:
    """The daemon's settings (research/multus-features.md §5.2, plus multihome's own).

    Each default is the one `multihome.daemon.configschema` documents.
    """

    #: Where the daemon listens: ``socketDir``, else ``daemonSocketDir``.
    socket_dir: str = DEFAULT_SOCKET_DIR
    #: ``daemonSocketDir`` as written, for the generated node config (the shim's view).
    daemon_socket_dir: str = DEFAULTS["daemonSocketDir"]
    socket_name: str = DEFAULT_SOCKET_NAME
    #: None: no metrics listener; 0: any free port (tests).
    metrics_port: int | None = DEFAULTS["metricsPort"]
    #: Empty: every interface, as upstream (the daemon runs with hostNetwork).
    metrics_address: str = DEFAULTS["metricsAddress"]
    #: CNI requests served at once; more wait in line.
    max_concurrent_requests: int = DEFAULTS["maxConcurrentRequests"]
    #: One CNI request, queueing included; kept below the shim's own 300 s.
    request_timeout: float = DEFAULTS["requestTimeoutSeconds"]
    #: The shim sends stdin of up to 16 MiB as base64 (4/3 larger) plus the environment.
    max_request_bytes: int = DEFAULTS["maxRequestBytes"]
    #: How long in-flight requests may finish after SIGTERM before they are rolled back.
    #: With the event flush (kube stopFlushSeconds, 5 s) it fits Kubernetes' default
    #: 30 s termination grace period.
    shutdown_timeout: float = DEFAULTS["shutdownTimeoutSeconds"]
    log_level: str = DEFAULTS["logLevel"]
    log_file: str = DEFAULTS["logFile"]
    log_to_stderr: bool = DEFAULTS["logToStderr"]
    log_json: bool = DEFAULTS["logJSON"]
    #: logOptions.maxSize (MiB) and maxBackups, for the log file's rotation.
    log_max_size: int = 100
    log_max_backups: int = 5
    cni_version: str = DEFAULTS["cniVersion"]
    cni_dir: str = DEFAULTS["cniDir"]
    bin_dir: str = DEFAULTS["binDir"]
    manifest_dir: str = DEFAULTS["manifestDir"]
    # Config generation (`multihome.daemon.confgen`).
    cni_config_dir: str = DEFAULTS["cniConfigDir"]
    multus_config_file: str = DEFAULTS["multusConfigFile"]
    multus_autoconfig_dir: str = DEFAULTS["multusAutoconfigDir"]
    multus_master_cni: str = DEFAULTS["multusMasterCNI"]
    force_cni_version: bool = DEFAULTS["forceCNIVersion"]
    override_network_name: bool = DEFAULTS["overrideNetworkName"]
    readiness_indicator_file: str = DEFAULTS["readinessindicatorfile"]
    #: The Kubernetes API; None when neither a kubeconfig nor in-cluster env is present.
    kube: KubeConfig | None = None
    node_name: str = DEFAULTS["nodeName"]
    #: Running pods follow their networks annotation (`multihome.daemon.hotplug`).
    hotplug: bool = DEFAULTS["hotplug"]
    hotplug_resync: float = DEFAULTS["hotplugResyncSeconds"]
    #: Lines to log at start-up (accepted but unsupported keys, unknown keys).
    notices: tuple[str, ...] = ()
    #: The file as written: the per-request override.
    raw: RawObject = field(default_factory=lambda: RawObject.parse("{}"), repr=False)
    path: str = ""

    @property
    def socket_path(self) -> str:
        return os.path.join(self.socket_dir, self.socket_name)

    @property
    def cache_dir(self) -> str:
        """The attachment cache of requests that do not name another ``cniDir``."""
        return os.path.join(self.cni_dir, "multihome")

    @classmethod
    def parse(
        cls,
        data: str | bytes,
        *,
        path: str = "",
        environ: Mapping[str, str] | None = None,
    ) -> DaemonConfig:
        """Read a configuration; `DaemonConfigError` names the first bad key."""
        env = os.environ if environ is None else environ
        where = f"daemon configuration {path}" if path else "daemon configuration"
        try:
            raw = RawObject.parse(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise DaemonConfigError(f"{where} is not a JSON object: {err}") from err
        matched = gojson.match_fields([(k, raw.get(k)) for k in raw], schema.NAMES)
        values = matched.values
        read = _Reader(values, where)
        # Every key is checked by its schema entry, whoever reads it later.
        for name in values:
            read.get(name)
        kw: dict[str, Any] = {"raw": raw, "path": path}
        for attr, name in _ATTRS.items():
            kw[attr] = read.get(name)
        notices = schema.unknown_key_notices(matched.unknown, where=where)

        daemon_socket_dir = kw["daemon_socket_dir"]
        kw["socket_dir"] = read.get("socketDir", "") or daemon_socket_dir or DEFAULT_SOCKET_DIR
        socket_path = os.path.join(kw["socket_dir"], kw["socket_name"])
        if len(socket_path.encode()) > _SUN_PATH_MAX:
            read.bad(
                "socketDir",
                kw["socket_dir"],
                f"a directory whose socket path is at most {_SUN_PATH_MAX} bytes "
                f"({socket_path} is {len(socket_path.encode())})",
            )
        # maxConcurrentRequests wins over upstream's connectionLimit.
        kw["max_concurrent_requests"] = (
            values.get("maxConcurrentRequests")
            or values.get("connectionLimit")
            or DEFAULTS["maxConcurrentRequests"]
        )
        kw["request_timeout"] = float(kw["request_timeout"])
        kw["shutdown_timeout"] = float(kw["shutdown_timeout"])
        kw["hotplug_resync"] = float(kw["hotplug_resync"])
        kw["log_level"] = kw["log_level"].lower()
        if "logOptions" in values:
            kw.update(read.log_options())

        cni_version = kw["cni_version"]
        if cni_version:
            try:
                versions.check_supported(cni_version)
            except CNIError as err:
                read.bad("cniVersion", cni_version, f"one of {', '.join(versions.ALL)}", err)

        node_name = kw["node_name"] or env.get("MULTUS_NODE_NAME") or env.get("NODE_NAME")
        kw["node_name"] = node_name or ""
        kw["kube"] = read.kube(
            kubeconfig=read.get("kubeconfig"),
            node_name=kw["node_name"],
            in_cluster=bool(
                env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT")
            ),
        )

        if read.get("chrootDir"):
            notices.append(
                "chrootDir is not supported: delegates run in the daemon's own file system; "
                "mount the CNI bin dirs into the daemon at the paths the node uses"
            )
        if read.get("enablePprof"):
            notices.append("enablePprof is ignored: multihome has no Go profiler to expose")
        certificate = read.get("perNodeCertificate")
        if certificate and certificate.get("enabled"):
            notices.append(
                "perNodeCertificate is not supported: give the daemon a kubeconfig or "
                "run it with its service account"
            )
        kw["notices"] = tuple(notices)
        return cls(**kw)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kw: Any) -> DaemonConfig:
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            raise DaemonConfigError(
                f"cannot read the daemon configuration {path}: {err.strerror or err}"
            ) from err
        return cls.parse(data, path=str(path), **kw)

    # -- the per-request override -----------------------------------------------

    def override(self, stdin: bytes) -> bytes:
        """The runtime's configuration with this file's top-level keys written over it.

        Only the keys the file names change; every other byte of ``stdin``
        stays as it was.  A ``stdin`` that is not a JSON object is returned
        unchanged, so that the engine reports it as the runtime sent it.
        The answer is kept for the next request with the same bytes.
        """
        memo = self._overrides
        found = memo.get(stdin)
        if found is None:
            found = self._override(stdin)
            if len(memo) >= _OVERRIDES_KEPT:
                memo.clear()
            memo[stdin] = found
        return found

    @functools.cached_property
    def _overrides(self) -> dict[bytes, bytes]:
        return {}

    def _override(self, stdin: bytes) -> bytes:
        updates = {
            key: RawJSON(self.raw.member_text(key))
            for key in self.raw
            if key.casefold() not in _NOT_OVERRIDDEN
        }
        if not updates:
            return stdin
        try:
            request = RawObject.parse(stdin)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return stdin
        # A key the request spells in another letter case is replaced too, so
        # that Go-style matching downstream cannot pick the request's value.
        folded = {k.casefold(): k for k in updates}
        stale = [k for k in request if k.casefold() in folded and k not in updates]
        return request.edit(updates, remove=stale).text.encode()


class _Reader:
    """Typed access to the matched keys; every failure names the key, value and rule."""

    def __init__(self, values: dict[str, Any], where: str) -> None:
        self.values = values
        self.where = where

    def get(self, name: str, default: Any = None) -> Any:
        """The key's value, checked by its schema entry; its default when absent or empty."""
        key = schema.BY_NAME[name]
        value = self.values.get(name)
        if value is None:
            return key.default if default is None else default
        if not key.accepts(value):
            self.bad(name, value, key.rule())
        if value == "" and key.kind in ("string", "file-name", "log-level"):
            return key.default if default is None else default
        return value

    def bad(self, key: str, value: Any, valid: str, cause: Exception | None = None) -> NoReturn:
        shown = json.dumps(value) if not isinstance(value, float) else repr(value)
        raise DaemonConfigError(
            f"{self.where}: {key} is {shown[:200]}; it must be {valid}"
        ) from cause

    def integer(self, key: str, *, low: int, high: int | None = None, valid: str = "") -> int:
        value = self.values.get(key)
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < low
            or (high is not None and value > high)
        ):
            rule = f"a whole number from {low} to {high}" if high else f"a whole number >= {low}"
            self.bad(key, value, valid or rule)
        return value

    def log_options(self) -> dict[str, Any]:
        value = self.values.get("logOptions")
        if not isinstance(value, dict):
            self.bad("logOptions", value, "an object with maxSize, maxBackups, maxAge, compress")
        fields = gojson.match_fields(value, ("maxAge", "maxSize", "maxBackups", "compress"))
        inner = _Reader(fields.values, self.where)
        out: dict[str, Any] = {}
        if "maxSize" in fields.values:
            out["log_max_size"] = inner.integer("maxSize", low=1, valid="logOptions.maxSize >= 1")
        if "maxBackups" in fields.values:
            out["log_max_backups"] = inner.integer(
                "maxBackups", low=0, valid="logOptions.maxBackups >= 0"
            )
        return out

    def kube(self, *, kubeconfig: str, node_name: str, in_cluster: bool) -> KubeConfig | None:
        section = self.values.get("kube")
        if section is not None and not isinstance(section, dict):
            self.bad("kube", section, "an object of Kubernetes client settings")
        try:
            settings = KubeConfig.from_mapping(section or {})
        except ValueError as err:
            raise DaemonConfigError(f"{self.where}: {err}") from err
        if not kubeconfig and not in_cluster and not settings.kubeconfig:
            return None
        if kubeconfig and not settings.kubeconfig:
            settings = replace(settings, kubeconfig=kubeconfig)
        if node_name and not settings.node_name:
            settings = replace(settings, node_name=node_name)
        return settings
