"""The plugins' VERSION answers kept on disk, for the one-shot plugin (``multihome-cni``).

The daemon asks each binary VERSION once per path and stamp (mtime, size,
inode; `multihome.cni.invoking.version_info`) and keeps the answer in
memory; the thin plugin is a new process per call and would ask every
plugin of a pod again on every ADD (one exec each, tens of milliseconds).
It loads ``.plugin-versions.json`` from the attachment cache directory into
its `SubprocessExec` before the engine runs and saves what it learnt after.

The file is only a cache: one that is missing, corrupt, too large, a
symlink or unwritable is ignored (the plugins are asked again), never an
error of the ADD.  An entry counts only while its binary has the same
stamp, so a replaced plugin is asked again; at most `MAX_ENTRIES` are kept.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from multihome import atomicfile
from multihome.cni.invoking import binary_stamp
from multihome.cni.output import PluginInfo

from .cache import read_regular

log = logging.getLogger(__name__)

KIND = "multihomePluginVersionsV1"
FILE_NAME = ".plugin-versions.json"
#: Binaries remembered: a node has some tens of plugins; more are dropped, oldest first.
MAX_ENTRIES = 256
#: Bytes the file may have (256 entries of a few hundred bytes each).
MAX_BYTES = 256 << 10

Stamp = tuple[int, int, int]
#: `SubprocessExec.versions`: binary path -> (stamp, answer).
Versions = dict[str, tuple[Stamp, PluginInfo]]


# -- the file's text (no I/O) ------------------------------------------------------------


def encode(versions: Mapping[str, tuple[Stamp, PluginInfo]]) -> bytes:
    """The file's bytes; the last `MAX_ENTRIES` entries (insertion order: oldest first)."""
    kept = list(versions.items())[-MAX_ENTRIES:]
    plugins = {
        path: {
            "stamp": list(stamp),
            "cniVersion": info.cni_version,
            "supportedVersions": list(info.supported_versions),
        }
        for path, (stamp, info) in kept
    }
    return json.dumps({"kind": KIND, "plugins": plugins}, indent=1).encode()


def decode(data: bytes | str) -> Versions:
    """The entries of a file; a `ValueError` when it is not one.  Malformed entries are skipped."""
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise ValueError("not a multihome plugin version cache")
    plugins = doc.get("plugins")
    if not isinstance(plugins, dict):
        raise ValueError("its plugins are not an object")
    out: Versions = {}
    for path, entry in list(plugins.items())[-MAX_ENTRIES:]:
        decoded = _entry(path, entry)
        if decoded is not None:
            out[path] = decoded
    return out


def _entry(path: str, entry: Any) -> tuple[Stamp, PluginInfo] | None:
    if not path.startswith("/") or not isinstance(entry, dict):
        return None
    stamp, version, supported = (
        entry.get("stamp"),
        entry.get("cniVersion"),
        entry.get("supportedVersions"),
    )
    if not (
        isinstance(stamp, list)
        and len(stamp) == 3
        and all(type(n) is int for n in stamp)
        and isinstance(version, str)
        and isinstance(supported, list)
        and all(isinstance(v, str) for v in supported)
    ):
        return None
    return (stamp[0], stamp[1], stamp[2]), PluginInfo(version, tuple(supported))


def current(versions: Versions, stamps: Mapping[str, Stamp | None]) -> Versions:
    """The entries whose binary still has the stamp they were asked with."""
    return {path: entry for path, entry in versions.items() if stamps.get(path) == entry[0]}


# -- the file -----------------------------------------------------------------------------


def load(directory: str | os.PathLike[str]) -> Versions:
    """The cached answers in ``directory``; empty when there are none or they cannot be read."""
    path = Path(directory) / FILE_NAME
    try:
        return decode(read_regular(path, MAX_BYTES))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as err:
        log.info("ignoring the plugin version cache %s: %s", path, err)
        return {}


def save(directory: str | os.PathLike[str], versions: Versions, *, loaded: Versions) -> None:
    """Add what was learnt since `load` gave ``loaded``; never raises for the file's faults.

    Nothing is written when nothing was learnt (the warm ADD).  The file as
    it is now (another ADD may have saved meanwhile) is merged in, and entries
    whose binary changed or went are dropped.
    """
    if versions == loaded:
        return
    path = Path(directory) / FILE_NAME
    merged = load(directory)
    for name, entry in versions.items():
        merged.pop(name, None)  # re-inserted last: the newest entries are the ones kept
        merged[name] = entry
    kept = current(merged, {name: binary_stamp(name) for name in merged})
    try:
        # No fsync: a cache lost with the machine is asked again, and the ADD
        # must not wait for the disk.
        atomicfile.write(path, encode(kept), mode=0o600, sync=False)
    except OSError as err:
        log.info("cannot write the plugin version cache %s: %s", path, err)
