"""The CNI request: what a runtime hands a plugin in its environment and on stdin.

A CNI plugin is a program called with ``CNI_*`` variables and the network
configuration on stdin.  multihome receives that request in three places
(the thin plugin's own process, the daemon behind the shim, and the upstream
Multus shim API), so reading and checking it is one pure function of an
environment mapping and the stdin bytes, with libcni's rules (``pkg/skel``:
which variable each command requires; ``pkg/utils``: what a container ID
and an interface name may be) and error codes, and messages that say what is
wrong and what would be valid.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import CNIError, Code

#: The commands of the CNI spec, in the order the spec introduces them.
COMMANDS: tuple[str, ...] = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")

_ENV_VARS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")

# Which variables each command needs, as libcni's skel declares them.  DEL
# does without CNI_NETNS because the namespace may already be gone.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_PATH",),
    "STATUS": ("CNI_PATH",),
    "VERSION": (),
}

# libcni's `cniValidNameChars`, shared by container IDs and network names.
_VALID_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
_VALID_NAME_TEXT = (
    "it must start with a letter or digit and contain only letters, digits, '_', '.' and '-'"
)
_IFNAMSIZ = 15  # bytes, without the kernel's terminating NUL
_IFNAME_RULES = (
    f"an interface name has 1 to {_IFNAMSIZ} bytes, is not '.' or '..', "
    "and contains no '/', ':' or whitespace"
)
_ARGS_RULES = "CNI_ARGS is a ';'-separated list of KEY=VALUE pairs, e.g. K8S_POD_NAMESPACE=default"


#: Characters a container ID may have.  libcni sets no bound; multihome
#: names a cache file after the ID, and a file name has at most 255 bytes
#: (runtimes use 64 hex digits).
MAX_CONTAINER_ID = 200
#: How deep the configuration on stdin may nest arrays and objects; real
#: ones nest less than ten deep, and the JSON decoder recurses.
MAX_STDIN_DEPTH = 64
_SHOWN = 80


def _quote(value: str) -> str:
    # Shortened, and bytes that were not UTF-8 (os.environ keeps them as
    # surrogates) shown as U+FFFD: a message must always be printable.
    if len(value) > _SHOWN:
        value = value[:_SHOWN] + f"... ({len(value)} characters)"
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no byte decodes to
        raw = value.encode("utf-8", "replace")
    return json.dumps(raw.decode("utf-8", "replace"), ensure_ascii=False)


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_container_id(container_id: str) -> str:
    """libcni's ``ValidateContainerID``: the ID itself, or code 3 (missing) / 4 (bad)."""
    if not container_id:
        raise CNIError(
            Code.CONTAINER_UNKNOWN, "missing container ID (CNI_CONTAINERID)", _VALID_NAME_TEXT
        )
    if not _VALID_NAME.fullmatch(container_id):
        raise CNIError(
            Code.INVALID_ENV,
            f"invalid CNI_CONTAINERID {_quote(container_id)}: invalid characters",
            _VALID_NAME_TEXT,
        )
    if len(container_id) > MAX_CONTAINER_ID:
        raise CNIError(
            Code.INVALID_ENV,
            f"invalid CNI_CONTAINERID {_quote(container_id)}: it is too long",
            f"a container ID has at most {MAX_CONTAINER_ID} characters",
        )
    return container_id


def validate_ifname(ifname: str) -> str:
    """libcni's ``ValidateInterfaceName``: the name itself, or code 4 saying why not."""
    if not ifname:
        reason = "it is empty"
    elif not _is_utf8(ifname):
        reason = "it is not valid UTF-8"
    elif len(ifname.encode()) > _IFNAMSIZ:
        reason = f"it is {len(ifname.encode())} bytes long"
    elif ifname in (".", ".."):
        reason = "it is '.' or '..'"
    elif "\0" in ifname:  # libcni lets it through; no exec can pass it on
        reason = "it contains a NUL byte"
    elif any(c in "/:" or c.isspace() for c in ifname):
        reason = "it contains '/', ':' or whitespace"
    else:
        return ifname
    raise CNIError(
        Code.INVALID_ENV, f"invalid CNI_IFNAME {_quote(ifname)}: {reason}", _IFNAME_RULES
    )


def check_depth(data: bytes, limit: int = MAX_STDIN_DEPTH) -> None:
    """Code 6 when JSON ``data`` nests arrays and objects deeper than ``limit``.

    Checked before anything decodes it, so no decoder recurses into a
    hostile configuration.  Brackets inside strings do not count.
    """
    depth = 0
    in_string = False
    escaped_at = -1  # the offset of the byte after a backslash
    # Only the bytes that matter are visited: quotes, backslashes, brackets.
    for match in _STRUCTURE.finditer(data):
        char = match.group()
        if in_string:
            if match.start() == escaped_at:
                continue
            if char == b"\\":
                escaped_at = match.end()
            elif char == b'"':
                in_string = False
            continue
        if char == b'"':
            in_string = True
        elif char in (b"[", b"{"):
            depth += 1
            if depth > limit:
                raise CNIError(
                    Code.DECODE_FAILURE,
                    f"the configuration on stdin nests more than {limit} levels deep",
                    f"a network configuration nests at most {limit} arrays and objects",
                )
        elif char in (b"]", b"}"):
            depth -= 1


_STRUCTURE = re.compile(rb'[\\"\[\]{}]')


def validate_network_name(name: str) -> str:
    """libcni's ``ValidateNetworkName`` (checked before ADD): the name, or code 7."""
    if not _VALID_NAME.fullmatch(name):
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            f"invalid network name {_quote(name)}" + (": it is empty" if not name else ""),
            _VALID_NAME_TEXT,
        )
    return name


def parse_args(text: str) -> tuple[tuple[str, str], ...]:
    """``K=V;K=V`` as ordered pairs, as libcni's ``LoadArgs`` reads it.

    A pair is exactly one ``KEY=VALUE``: a value holding ``=`` is refused
    here, as upstream refuses it (Multus reads CNI_ARGS with libcni's
    ``LoadArgs``, thin and thick, which splits on every ``=``: "ARGS: invalid
    pair"), and as the plugins behind us would refuse it later, after other
    networks were attached.  Empty segments (a trailing
    ``;``) are skipped: they carry nothing and are harmless.
    """
    pairs = []
    for segment in text.split(";"):
        if not segment:
            continue
        key, sep, value = segment.partition("=")
        if not sep or not key or "=" in value:
            raise CNIError(
                Code.INVALID_ENV,
                f"invalid CNI_ARGS pair {_quote(segment)} in {_quote(text)}: expected KEY=VALUE",
                _ARGS_RULES,
            )
        pairs.append((key, value))
    return tuple(pairs)


def format_args(pairs: tuple[tuple[str, str], ...]) -> str:
    return ";".join(f"{key}={value}" for key, value in pairs)


@dataclass(frozen=True)
class K8sArgs:
    """The pod identity the kubelet's runtime puts into CNI_ARGS (empty when absent)."""

    namespace: str = ""
    name: str = ""
    infra_container_id: str = ""
    uid: str = ""

    @classmethod
    def from_pairs(cls, pairs: tuple[tuple[str, str], ...]) -> K8sArgs:
        # Later pairs win, as in LoadArgs, which assigns them in order.
        found = dict(pairs)
        return cls(
            namespace=found.get("K8S_POD_NAMESPACE", ""),
            name=found.get("K8S_POD_NAME", ""),
            infra_container_id=found.get("K8S_POD_INFRA_CONTAINER_ID", ""),
            uid=found.get("K8S_POD_UID", ""),
        )


@dataclass(frozen=True)
class Request:
    """One CNI call: the command, the attachment it is about, and the config bytes."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: tuple[tuple[str, str], ...] = ()
    path: tuple[str, ...] = ()
    stdin: bytes = b""

    @classmethod
    def from_env(cls, env: Mapping[str, str], stdin: bytes = b"") -> Request:
        """Read and check a request; a `CNIError` (code 3 or 4) says what is wrong.

        ``stdin`` is kept as bytes: the configuration is parsed by
        `multihome.cni.config`, which keeps plugin fields byte-for-byte.
        """
        command = env.get("CNI_COMMAND", "")
        if not command:
            raise CNIError(
                Code.INVALID_ENV,
                "required env variables [CNI_COMMAND] missing",
                f"CNI_COMMAND must be one of {', '.join(COMMANDS)}",
            )
        if command not in _REQUIRED:
            raise CNIError(
                Code.INVALID_ENV,
                f"unknown CNI_COMMAND: {_quote(command)}",
                f"CNI_COMMAND must be one of {', '.join(COMMANDS)}",
            )
        required = _REQUIRED[command]
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise CNIError(
                Code.INVALID_ENV,
                f"required env variables [{','.join(missing)}] missing",
                f"CNI_COMMAND={command} needs {', '.join(required)}",
            )
        if "CNI_CONTAINERID" in required:
            validate_container_id(env["CNI_CONTAINERID"])
        if "CNI_IFNAME" in required:
            validate_ifname(env["CNI_IFNAME"])
        if command != "VERSION":
            check_depth(stdin)
        return cls(
            command=command,
            container_id=env.get("CNI_CONTAINERID", ""),
            netns=env.get("CNI_NETNS", ""),
            ifname=env.get("CNI_IFNAME", ""),
            args=parse_args(env.get("CNI_ARGS", "")),
            path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
            # VERSION ignores stdin, as in skel: a runtime may send anything there.
            stdin=b"" if command == "VERSION" else bytes(stdin),
        )

    @property
    def k8s(self) -> K8sArgs:
        return K8sArgs.from_pairs(self.args)

    def arg(self, key: str) -> str | None:
        """The value of a CNI_ARGS key (the last one when repeated), or None."""
        value = None
        for k, v in self.args:
            if k == key:
                value = v
        return value

    def to_env(self) -> dict[str, str]:
        """The ``CNI_*`` variables that carry this request, for passing it on."""
        values = (
            self.command,
            self.container_id,
            self.netns,
            self.ifname,
            format_args(self.args),
            ":".join(self.path),
        )
        return dict(zip(_ENV_VARS, values, strict=True))
