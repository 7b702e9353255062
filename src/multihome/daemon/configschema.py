"""The keys of the daemon's config file: one typed description for every reader.

`DaemonConfig.parse` reads each key through this table (type, bounds,
default), `multihome.daemon.confgen` checks and copies the keys it uses by
the same entries, the table of docs/configuration.md is generated from it
(``python -m multihome.daemon.configschema --write docs/configuration.md``;
a test keeps the doc equal), and a key that is in no table gets a "did you mean" warning at
start-up instead of being ignored in silence.  The ``kube`` section is
described by `multihome.cluster.kube.KubeConfig` itself (its fields are the
keys; docs/configuration-kube.md).

Adding a key is one `Key` entry here (and, when the daemon keeps it, one
field of `DaemonConfig` whose default is ``DEFAULTS[name]``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from multihome.networks.config import KNOWN_KEYS as MULTUS_KEYS
from multihome.networks.config import LOG_LEVELS

Kind = Literal[
    "string", "file-name", "boolean", "integer", "seconds", "object", "namespaces", "log-level"
]
#: Who reads a key: the daemon itself, config generation, the shim (through our
#: generated file: these keys are copied into it), or nobody (accepted, reported).
Use = Literal["daemon", "confgen", "shim", "unsupported"]


@dataclass(frozen=True)
class Key:
    name: str
    kind: Kind
    #: The value when the key is absent, null or (for strings) empty.
    default: Any
    doc: str
    use: Use = "daemon"
    #: Integers: the smallest and largest valid values; seconds: whether 0 is valid.
    low: int = 0
    high: int | None = None
    positive: bool = False
    #: The rule in words, where the kind's own wording would not say it.
    valid: str = ""
    #: Shown in the doc's default column instead of the value.
    shown_default: str = ""
    #: Also copied into the generated 00-multihome.conf (the shim reads it there).
    copied: bool = False

    def rule(self) -> str:
        """What a valid value is, in words ("a whole number from 0 to 65535")."""
        if self.valid:
            return self.valid
        if self.kind == "integer":
            if self.high is not None:
                return f"a whole number from {self.low} to {self.high}"
            return f"a whole number >= {self.low}"
        if self.kind == "seconds":
            return "a number of seconds " + ("above 0" if self.positive else ">= 0")
        return {
            "string": "a string",
            "file-name": "a file name without '/'",
            "boolean": "true or false",
            "object": "a JSON object",
            "namespaces": "a comma-separated string of namespaces",
            "log-level": f"one of {', '.join(LOG_LEVELS)}",
        }[self.kind]

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` (decoded JSON, not null) is valid for this key."""
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if self.kind in ("string", "file-name", "log-level"):
            if not isinstance(value, str):
                return False
            if self.kind == "file-name":
                return not value or (
                    "/" not in value and value not in (".", "..") and "\0" not in value
                )
            return self.kind == "string" or not value or value.lower() in LOG_LEVELS
        if self.kind == "boolean":
            return isinstance(value, bool)
        if self.kind == "integer":
            return (
                isinstance(value, int)
                and not isinstance(value, bool)
                and value >= self.low
                and (self.high is None or value <= self.high)
            )
        if self.kind == "seconds":
            return number and value >= 0 and not (self.positive and value == 0)
        if self.kind == "object":
            return isinstance(value, dict)
        return isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )


_MiB = 1024 * 1024

KEYS: tuple[Key, ...] = (
    # -- the socket and the HTTP side --
    Key("socketDir", "string", "/run/multihome",
        "The directory of the unix socket (0700; socket 0600); default `daemonSocketDir`"),
    Key("daemonSocketDir", "string", "",
        "Upstream's name for `socketDir`, as the shim sees it",
        copied=True, shown_default="–"),
    Key("socketName", "file-name", "multihome.sock",
        "`multus.sock` serves the upstream Go shim unchanged", copied=True),
    Key("metricsPort", "integer", None, "Prometheus `/metrics`, `/healthz` and `/readyz` over "
        "HTTP on this port (0: any free port)", high=65535, shown_default="off"),
    Key("metricsAddress", "string", "", "The address of the metrics listener",
        shown_default="all interfaces"),
    Key("maxConcurrentRequests", "integer", 32,
        "CNI requests served at once; the rest queue", low=1),
    Key("connectionLimit", "integer", None, "Upstream's name for `maxConcurrentRequests`",
        low=1, valid="a whole number greater than 0", shown_default="–"),
    Key("requestTimeoutSeconds", "seconds", 240.0,
        "One request, queueing included (a timed-out ADD is rolled back; code 11)",
        positive=True),
    Key("maxRequestBytes", "integer", 24 * _MiB,
        "Larger requests get HTTP 413 with a CNI error", low=1024, shown_default="24 MiB"),
    Key("shutdownTimeoutSeconds", "seconds", 20.0,
        "After SIGTERM: `/readyz` fails at once; in-flight requests may finish for 75 % of "
        "this, then roll back; at 90 % plugins still running are killed "
        "([faults.md](faults.md))"),
    # -- logging --
    Key("logLevel", "log-level", "info", "As upstream", copied=True),
    Key("logFile", "string", "", "As upstream; rotated by `logOptions`", copied=True,
        shown_default="–"),
    Key("logToStderr", "boolean", True, "As upstream", copied=True),
    Key("logJSON", "boolean", False,
        "One JSON object per line, with pod, container and request ID"),
    Key("logOptions", "object", None,
        "`maxSize` (MiB, default 100) and `maxBackups` (default 5) of the log file",
        copied=True, shown_default="–"),
    # -- requests --
    Key("cniVersion", "string", "",
        "The version of the generated file; never overrides a request's", use="confgen",
        shown_default="the primary's"),
    Key("cniDir", "string", "/var/lib/cni/multus",
        "State: the attachment cache is `<cniDir>/multihome`", copied=True),
    Key("binDir", "string", "/opt/cni/bin", "Searched first for delegate plugins", copied=True),
    Key("manifestDir", "string", "",
        "Pods and NADs from files instead of the Kubernetes API", shown_default="–"),
    # -- generation of 00-multihome.conf --
    Key("cniConfigDir", "string", "/etc/cni/net.d",
        "Where `00-multihome.conf` is written; config generation is on only when this, "
        "`multusAutoconfigDir` or `multusConfigFile` is set", use="confgen"),
    Key("multusAutoconfigDir", "string", "",
        "Where the primary CNI configuration is looked for", use="confgen",
        shown_default="`cniConfigDir`"),
    Key("multusMasterCNI", "string", "",
        "The primary's file name, instead of the lexically first", use="confgen",
        shown_default="–"),
    Key("multusConfigFile", "string", "auto",
        "`auto`: generate; a path: copy that file as it is", use="confgen"),
    Key("overrideNetworkName", "boolean", False,
        "Name our network after the primary's", use="confgen"),
    Key("forceCNIVersion", "boolean", False,
        "Skip the check that the primary supports CHECK", use="confgen"),
    Key("cleanupConfigOnExit", "boolean", False,
        "Remove `00-multihome.conf` when the daemon stops", use="confgen"),
    Key("capabilities", "object", None,
        "Capabilities our file declares besides the primary's", use="confgen",
        shown_default="–"),
    Key("cniConfigFormat", "string", "conf",
        "`conf`: write `00-multihome.conf`; `conflist`: `00-multihome.conflist` (podman reads "
        "only lists)", use="confgen", valid='"conf" or "conflist"'),
    Key("readinessindicatorfile", "string", "",
        "As in the multus configuration, ADD and STATUS wait for this file; with config "
        "generation on, also: ready (`/readyz`), and `00-multihome.conf` present, only while "
        "this file exists", use="confgen", shown_default="–"),
    # -- copied for the shim, and request keys upstream's generated file carries --
    Key("shimReadinessTimeoutSeconds", "seconds", None,
        "How long the shim waits for the daemon's socket", use="shim", copied=True,
        shown_default="the shim's"),
    Key("shimRequestTimeoutSeconds", "seconds", None,
        "How long the shim waits for an answer", use="shim", copied=True,
        shown_default="the shim's"),
    Key("namespaceIsolation", "boolean", False, "As the multus configuration key",
        use="shim", copied=True),
    Key("globalNamespaces", "namespaces", None, "As the multus configuration key",
        use="shim", copied=True, shown_default="default"),
    Key("auxiliaryCNIChainName", "string", "", "As the multus configuration key",
        use="shim", copied=True, shown_default="–"),
    # -- the Kubernetes API --
    Key("kubeconfig", "string", "", "The API server; default the pod's service account",
        shown_default="in-cluster"),
    Key("nodeName", "string", "",
        "This node (the pod watch's field selector); default env `MULTUS_NODE_NAME`, "
        "`NODE_NAME`", shown_default="env"),
    Key("kube", "object", None,
        "Client settings: [configuration-kube.md](configuration-kube.md)",
        valid="an object of Kubernetes client settings", shown_default="–"),
    # -- running pods --
    Key("hotplug", "boolean", False,
        "Running pods on this node follow changes of their `k8s.v1.cni.cncf.io/networks` "
        "annotation: networks are added and removed ([hotplug.md](hotplug.md))"),
    Key("hotplugResyncSeconds", "seconds", 60.0,
        "With `hotplug`: every pod's annotation is compared with its attachments this often, "
        "besides at each change the watch sees", positive=True),
    # -- accepted, not supported --
    Key("chrootDir", "string", "", "Logged as unsupported", use="unsupported",
        shown_default="–"),
    Key("enablePprof", "boolean", False, "Logged as unsupported", use="unsupported"),
    Key("perNodeCertificate", "object", None, "Logged as unsupported when enabled",
        use="unsupported", valid="an object", shown_default="–"),
)  # fmt: skip

BY_NAME = {key.name: key for key in KEYS}
NAMES = tuple(BY_NAME)
DEFAULTS: dict[str, Any] = {key.name: key.default for key in KEYS}
#: Keys of the request's configuration: in the daemon file they override every request.
REQUEST_KEYS = frozenset(k.casefold() for k in (*MULTUS_KEYS, "plugins", "ipam", "dns", "args"))


def unknown_key_notices(keys: Iterable[str], *, where: str = "daemon configuration") -> list[str]:
    """A warning for each key that neither the daemon nor a request would read."""
    known = {name.casefold(): name for name in (*NAMES, *MULTUS_KEYS)}
    notices = []
    for key in keys:
        folded = key.casefold()
        if folded in known or folded in REQUEST_KEYS:
            continue
        notices.append(f"{where}: unknown key {key!r} is ignored{did_you_mean(key, known)}")
    return notices


def did_you_mean(key: str, known: dict[str, str] | Iterable[str]) -> str:
    """``"; did you mean 'socketDir'?"`` for the closest known name, or ``""``."""
    names = known if isinstance(known, dict) else {k.casefold(): k for k in known}
    import difflib  # for an unknown key only: not resident in the daemon

    close = difflib.get_close_matches(key.casefold(), list(names), n=1, cutoff=0.75)
    return f"; did you mean {names[close[0]]!r}?" if close else ""


def markdown_table() -> str:
    """The key table of docs/configuration.md ("The daemon's config file")."""
    rows = ["| Key | Type | Default | Meaning |", "|---|---|---|---|"]
    for key in KEYS:
        if key.shown_default:
            default = key.shown_default
        elif isinstance(key.default, bool):
            default = f"`{str(key.default).lower()}`"
        elif isinstance(key.default, float) and key.default.is_integer():
            default = f"`{int(key.default)}`"
        else:
            default = f"`{key.default}`"
        meaning = key.doc + (" (copied into `00-multihome.conf`)" if key.copied else "")
        rows.append(f"| `{key.name}` | {key.rule()} | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


BEGIN_MARK = "<!-- generated from src/multihome/daemon/configschema.py"
END_MARK = "<!-- end of generated table -->"


def write_table(doc: str) -> bool:
    """Put the table between the doc's markers; whether the file changed."""
    with open(doc, encoding="utf-8") as handle:
        text = handle.read()
    start = text.index("\n", text.index(BEGIN_MARK)) + 1
    end = text.index(END_MARK)
    new = text[:start] + markdown_table() + text[end:]
    if new == text:
        return False
    with open(doc, "w", encoding="utf-8") as handle:
        handle.write(new)
    return True


if __name__ == "__main__":
    import sys

    # `python -m multihome.daemon.configschema [--write docs/configuration.md]`
    if sys.argv[1:2] == ["--write"]:
        write_table(sys.argv[2])
    else:
        print(markdown_table(), end="")
