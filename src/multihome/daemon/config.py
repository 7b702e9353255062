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
from multihome.networks.config import DEFAULT_BIN_DIR, DEFAULT_CNI_DIR

#: Upstream's ``-config`` default.
DEFAULT_PATH = "/etc/cni/net.d/multus.d/daemon-config.json"
DEFAULT_SOCKET_DIR = "/run/multihome"
DEFAULT_SOCKET_NAME = "multihome.sock"
#: The name upstream's Go shim connects to, for ``socketName``.
MULTUS_SOCKET_NAME = "multus.sock"
LOG_LEVELS = ("debug", "verbose", "info", "warning", "error", "panic")
# A unix socket path holds at most this many bytes (sun_path minus the NUL).
_SUN_PATH_MAX = 107
# The shim sends stdin of up to 16 MiB as base64 (4/3 larger) plus the environment.
_DEFAULT_MAX_REQUEST_BYTES = 24 * 1024 * 1024

# Keys of the file that never replace a request's key (see the module docstring).
_NOT_OVERRIDDEN = frozenset(
    k.casefold()
    for k in ("cniVersion", "logLevel", "logFile", "logToStderr", "logOptions", "logJSON")
)

_FIELDS = (
    "socketDir",
    "daemonSocketDir",
    "socketName",
    "metricsPort",
    "metricsAddress",
    "connectionLimit",
    "maxConcurrentRequests",
    "requestTimeoutSeconds",
    "maxRequestBytes",
    "shutdownTimeoutSeconds",
    "logLevel",
    "logFile",
    "logToStderr",
    "logJSON",
    "logOptions",
    "cniVersion",
    "cniDir",
    "binDir",
    "manifestDir",
    "cniConfigDir",
    "multusConfigFile",
    "multusAutoconfigDir",
    "multusMasterCNI",
    "forceCNIVersion",
    "overrideNetworkName",
    "readinessindicatorfile",
    "kubeconfig",
    "kube",
    "nodeName",
    "chrootDir",
    "enablePprof",
    "perNodeCertificate",
)


class DaemonConfigError(Exception):
    """The configuration file cannot be used; the message says which key and why."""


@dataclass(frozen=True)
class DaemonConfig:
    """The daemon's settings (research/multus-features.md §5.2, plus multihome's own)."""

    #: Where the daemon listens: ``socketDir``, else ``daemonSocketDir``.
    socket_dir: str = DEFAULT_SOCKET_DIR
    #: ``daemonSocketDir`` as written, for the generated node config (the shim's view).
    daemon_socket_dir: str = ""
    socket_name: str = DEFAULT_SOCKET_NAME
    #: None: no metrics listener; 0: any free port (tests).
    metrics_port: int | None = None
    #: Empty: every interface, as upstream (the daemon runs with hostNetwork).
    metrics_address: str = ""
    #: CNI requests served at once; more wait in line.
    max_concurrent_requests: int = 32
    #: One CNI request, queueing included; kept below the shim's own 300 s.
    request_timeout: float = 240.0
    max_request_bytes: int = _DEFAULT_MAX_REQUEST_BYTES
    #: How long in-flight requests may finish after SIGTERM before they are rolled back.
    #: With the event flush (kube stopFlushSeconds, 5 s) it fits Kubernetes' default
    #: 30 s termination grace period.
    shutdown_timeout: float = 20.0
    log_level: str = "info"
    log_file: str = ""
    log_to_stderr: bool = True
    log_json: bool = False
    #: logOptions.maxSize (MiB) and maxBackups, for the log file's rotation.
    log_max_size: int = 100
    log_max_backups: int = 5
    cni_version: str = ""
    cni_dir: str = DEFAULT_CNI_DIR
    bin_dir: str = DEFAULT_BIN_DIR
    manifest_dir: str = ""
    # Config generation (`multihome.daemon.confgen`).
    cni_config_dir: str = "/etc/cni/net.d"
    multus_config_file: str = "auto"
    multus_autoconfig_dir: str = ""
    multus_master_cni: str = ""
    force_cni_version: bool = False
    override_network_name: bool = False
    readiness_indicator_file: str = ""
    #: The Kubernetes API; None when neither a kubeconfig nor in-cluster env is present.
    kube: KubeConfig | None = None
    node_name: str = ""
    #: Lines to log at start-up (accepted but unsupported keys).
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
        values = gojson.match_fields([(k, raw.get(k)) for k in raw], _FIELDS).values
        read = _Reader(values, where)
        kw: dict[str, Any] = {"raw": raw, "path": path}
        notices: list[str] = []

        daemon_socket_dir = read.string("daemonSocketDir")
        kw["daemon_socket_dir"] = daemon_socket_dir
        kw["socket_dir"] = read.string("socketDir") or daemon_socket_dir or DEFAULT_SOCKET_DIR
        kw["socket_name"] = read.file_name("socketName") or DEFAULT_SOCKET_NAME
        socket_path = os.path.join(kw["socket_dir"], kw["socket_name"])
        if len(socket_path.encode()) > _SUN_PATH_MAX:
            read.bad(
                "socketDir",
                kw["socket_dir"],
                f"a directory whose socket path is at most {_SUN_PATH_MAX} bytes "
                f"({socket_path} is {len(socket_path.encode())})",
            )
        if "metricsPort" in values:
            kw["metrics_port"] = read.integer("metricsPort", low=0, high=65535)
        kw["metrics_address"] = read.string("metricsAddress")
        limit = None
        if "connectionLimit" in values:
            limit = read.integer("connectionLimit", low=1, valid="a whole number greater than 0")
        if "maxConcurrentRequests" in values:
            limit = read.integer("maxConcurrentRequests", low=1)
        if limit is not None:
            kw["max_concurrent_requests"] = limit
        if "requestTimeoutSeconds" in values:
            kw["request_timeout"] = read.seconds("requestTimeoutSeconds", positive=True)
        if "maxRequestBytes" in values:
            kw["max_request_bytes"] = read.integer("maxRequestBytes", low=1024)
        if "shutdownTimeoutSeconds" in values:
            kw["shutdown_timeout"] = read.seconds("shutdownTimeoutSeconds", positive=False)

        level = read.string("logLevel")
        if level:
            if level.lower() not in LOG_LEVELS:
                read.bad("logLevel", level, f"one of {', '.join(LOG_LEVELS)}")
            kw["log_level"] = level.lower()
        kw["log_file"] = read.string("logFile")
        for key, attr in (("logToStderr", "log_to_stderr"), ("logJSON", "log_json")):
            if key in values:
                kw[attr] = read.boolean(key)
        if "logOptions" in values:
            kw.update(read.log_options())

        cni_version = read.string("cniVersion")
        if cni_version:
            try:
                versions.check_supported(cni_version)
            except CNIError as err:
                read.bad("cniVersion", cni_version, f"one of {', '.join(versions.ALL)}", err)
            kw["cni_version"] = cni_version
        kw["cni_dir"] = read.string("cniDir") or DEFAULT_CNI_DIR
        kw["bin_dir"] = read.string("binDir") or DEFAULT_BIN_DIR
        kw["manifest_dir"] = read.string("manifestDir")

        kw["cni_config_dir"] = read.string("cniConfigDir") or "/etc/cni/net.d"
        kw["multus_config_file"] = read.string("multusConfigFile") or "auto"
        kw["multus_autoconfig_dir"] = read.string("multusAutoconfigDir")
        kw["multus_master_cni"] = read.string("multusMasterCNI")
        for key, attr in (
            ("forceCNIVersion", "force_cni_version"),
            ("overrideNetworkName", "override_network_name"),
        ):
            if key in values:
                kw[attr] = read.boolean(key)
        kw["readiness_indicator_file"] = read.string("readinessindicatorfile")

        node_name = read.string("nodeName") or env.get("MULTUS_NODE_NAME") or env.get("NODE_NAME")
        kw["node_name"] = node_name or ""
        kw["kube"] = read.kube(
            kubeconfig=read.string("kubeconfig"),
            node_name=kw["node_name"],
            in_cluster=bool(
                env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT")
            ),
        )

        if read.string("chrootDir"):
            notices.append(
                "chrootDir is not supported: delegates run in the daemon's own file system; "
                "mount the CNI bin dirs into the daemon at the paths the node uses"
            )
        if "enablePprof" in values and read.boolean("enablePprof"):
            notices.append("enablePprof is ignored: multihome has no Go profiler to expose")
        certificate = values.get("perNodeCertificate")
        if certificate is not None:
            if not isinstance(certificate, dict):
                read.bad("perNodeCertificate", certificate, "an object")
            if certificate.get("enabled"):
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
        """
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

    def bad(self, key: str, value: Any, valid: str, cause: Exception | None = None) -> NoReturn:
        shown = json.dumps(value) if not isinstance(value, float) else repr(value)
        raise DaemonConfigError(
            f"{self.where}: {key} is {shown[:200]}; it must be {valid}"
        ) from cause

    def string(self, key: str) -> str:
        value = self.values.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.bad(key, value, "a string")
        return value

    def file_name(self, key: str) -> str:
        value = self.string(key)
        if value and ("/" in value or value in (".", "..") or "\0" in value):
            self.bad(key, value, "a file name without '/'")
        return value

    def boolean(self, key: str) -> bool:
        value = self.values.get(key)
        if not isinstance(value, bool):
            self.bad(key, value, "true or false")
        return value

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

    def seconds(self, key: str, *, positive: bool) -> float:
        value = self.values.get(key)
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or value < 0
            or (positive and value == 0)
        ):
            self.bad(key, value, "a number of seconds " + ("above 0" if positive else ">= 0"))
        return float(value)

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
