"""CNI configuration files on the node, found by network name or by path.

Three settings point at files rather than at NetworkAttachmentDefinitions:
a NAD with an empty ``spec.config`` (the file in ``confDir`` whose CNI
``name`` is the NAD's name), ``clusterNetwork``/``defaultNetworks`` given as
a CNI network name or as a path, and ``auxiliaryCNIChainName``.  The network
model does no I/O, so the files come through `ConfFiles`, which the caller
implements over the file system (or a cache of it) and tests over a dict
(`FileSnapshot`).

Lookup rules (upstream: nad-client ``GetCNIConfigFromFile``, Multus
``getNetDelegate``, libcni ``NetworkConfFromFile``):

* **By name in a directory** (`find_by_name`): the files ending ``.conflist``
  in lexical order, then those ending ``.conf`` or ``.json``; the first whose
  ``name`` matches wins.  The NPWG spec (§3.4.1) puts lists before single
  configs; Multus takes the lexically first of all three kinds.  A file that
  does not parse is skipped with a warning (Multus fails every lookup that
  reaches it).
* **A directory path** (`first_in_directory`): its lexically first
  ``.conf``/``.json``/``.conflist`` file.
* **A file path** (`load_file`): a ``.conflist`` is a list, anything else a
  single config (or a list, when it has ``plugins`` and no ``type``).
* **Chained plugins of a list** (libcni, CNI 1.1): unless the list sets
  ``loadOnlyInlinedPlugins``, every ``*.conf`` in ``<dir>/<list name>/`` is
  appended to its plugins, in lexical order.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from multihome.cni.config import NetConf, NetConfList, RawJSON, RawObject, parse_network
from multihome.cni.errors import CNIError, Code

from .findings import Finding, finding

CONF_EXTENSIONS = (".conf", ".json", ".conflist")
_LIST_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")


class ConfFiles(Protocol):
    """Read access to the node's CNI configuration files.

    Implementations never raise: a path that cannot be read is absent.
    """

    def list_dir(self, path: str) -> Sequence[str] | None:
        """Names of the regular files directly in directory ``path``, or None if no directory."""

    def read(self, path: str) -> bytes | None:
        """The content of regular file ``path``, or None."""


class FileSnapshot:
    """`ConfFiles` over a mapping of absolute path to content (tests, cached reads)."""

    def __init__(self, files: Mapping[str, bytes | str] | None = None) -> None:
        self._files = {
            posixpath.normpath(path): data.encode() if isinstance(data, str) else bytes(data)
            for path, data in (files or {}).items()
        }

    def list_dir(self, path: str) -> Sequence[str] | None:
        directory = posixpath.normpath(path)
        prefix = directory.rstrip("/") + "/"
        found = False
        out = []
        for file in self._files:
            if file.startswith(prefix):
                found = True
                rest = file[len(prefix) :]
                if "/" not in rest:
                    out.append(rest)
        return sorted(out) if found else None

    def read(self, path: str) -> bytes | None:
        return self._files.get(posixpath.normpath(path))


NO_FILES: ConfFiles = FileSnapshot()


@dataclass(frozen=True, eq=False)
class ConfFile:
    path: str
    conf: NetConfList
    #: A list (``.conflist``: run as a chain) or a single config.
    is_list: bool


def _ext(name: str) -> str:
    return posixpath.splitext(name)[1]


def _decode(data: bytes) -> str:
    return data.decode("utf-8")


def parse_file(files: ConfFiles, path: str, *, data: bytes) -> ConfFile:
    """One configuration file's content; `CNIError` when it is not a configuration."""
    try:
        text = _decode(data)
    except UnicodeDecodeError as err:
        raise CNIError(Code.DECODE_FAILURE, f"{path} is not UTF-8: {err}") from err
    if _ext(path) != ".conflist":
        try:
            raw = RawObject.parse(text)
        except (ValueError, RecursionError) as err:
            raise CNIError(Code.DECODE_FAILURE, f"failed to decode {path}: {err}") from err
        kind = raw.get("type")
        # parse_network's rule: a configuration with a type is a single plugin's.
        if isinstance(kind, str) and kind:
            return ConfFile(path, parse_network(text), False)
    return ConfFile(path, _load_list(files, path, text), True)


def _load_list(files: ConfFiles, path: str, text: str) -> NetConfList:
    try:
        raw = RawObject.parse(text)
    except (ValueError, RecursionError) as err:
        raise CNIError(Code.DECODE_FAILURE, f"failed to decode {path}: {err}") from err
    inline_only = raw.get("loadOnlyInlinedPlugins")
    name = raw.get("name")
    extra = []
    if not (inline_only is True or str(inline_only).lower() == "true") and isinstance(name, str):
        extra = chained_plugins(files, posixpath.dirname(path), list_name=name)
    if extra:
        items = raw.array_items_text("plugins") if isinstance(raw.get("plugins"), list) else []
        raw = raw.edit({"plugins": RawJSON("[" + ",".join(items + extra) + "]")})
    return NetConfList.parse(raw)


def chained_plugins(files: ConfFiles, directory: str, *, list_name: str) -> list[str]:
    """The texts of ``<directory>/<list_name>/*.conf``, lexically ordered; bad ones left out."""
    if not _LIST_NAME.fullmatch(list_name):
        return []
    subdir = posixpath.join(directory, list_name)
    out = []
    for name in sorted(files.list_dir(subdir) or ()):
        if _ext(name) != ".conf":
            continue
        data = files.read(posixpath.join(subdir, name))
        if data is None:
            continue
        try:
            text = _decode(data)
            NetConf.parse(text, in_list=True)
        except (CNIError, UnicodeDecodeError, RecursionError):
            continue
        out.append(text.strip())
    return out


def _candidates(files: ConfFiles, directory: str) -> list[str]:
    names = [n for n in files.list_dir(directory) or () if _ext(n) in CONF_EXTENSIONS]
    lists = sorted(n for n in names if _ext(n) == ".conflist")
    singles = sorted(n for n in names if _ext(n) != ".conflist")
    return [posixpath.join(directory, n) for n in lists + singles]


def find_by_name(
    files: ConfFiles, directory: str, *, name: str, path: str
) -> tuple[ConfFile | None, list[Finding]]:
    """The configuration in ``directory`` whose network name is ``name`` (rules above)."""
    findings = []
    for file in _candidates(files, directory):
        data = files.read(file)
        if data is None:
            continue
        try:
            loaded = parse_file(files, file, data=data)
        except CNIError as err:
            findings.append(finding("conf-file-invalid", path, f"skipped {file}: {err.msg}"))
            continue
        if loaded.conf.name == name:
            return loaded, findings
    return None, findings


def first_in_directory(
    files: ConfFiles, directory: str, *, path: str
) -> tuple[ConfFile | None, list[Finding]]:
    """The lexically first configuration file of ``directory`` (Multus' directory rule)."""
    names = sorted(n for n in files.list_dir(directory) or () if _ext(n) in CONF_EXTENSIONS)
    findings: list[Finding] = []
    for name in names:
        file = posixpath.join(directory, name)
        data = files.read(file)
        if data is None:
            continue
        try:
            return parse_file(files, file, data=data), findings
        except CNIError as err:
            findings.append(finding("conf-file-invalid", path, f"skipped {file}: {err.msg}"))
    return None, findings


def load_path(files: ConfFiles, target: str, *, path: str) -> tuple[ConfFile | None, list[Finding]]:
    """A configuration given as a path: a directory's first file, or the file itself."""
    if files.list_dir(target) is not None:
        return first_in_directory(files, target, path=path)
    data = files.read(target)
    if data is None:
        return None, []
    try:
        return parse_file(files, target, data=data), []
    except CNIError as err:
        return None, [finding("conf-file-invalid", path, f"cannot load {target}: {err.msg}")]
