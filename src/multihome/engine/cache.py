"""The attachment cache: what was run for each container, so DEL needs nothing else.

A record is written before the first delegate runs and again after each
one, so that a DEL after a crash, a deleted NAD, a deleted pod or an API
outage still knows every delegate configuration (its exact bytes), its
interface name, its CNI_ARGS and capability arguments, and its result.
Writes are atomic (temp file, fsync, rename, fsync of the directory): a
node that loses power mid-write keeps the old record, never half a file.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from multihome import atomicfile
from multihome.cni.errors import CNIError, Code

log = logging.getLogger(__name__)

KIND = "multihomeAttachmentsV1"
#: "planned": not started in this process; "adding": started, may be half
#: done; "added": done.  After a crash every state is unknown, and DEL runs
#: them all: a DEL of something never added is harmless.
State = Literal["planned", "adding", "added"]


@dataclass
class CachedAttachment:
    network: str  # "<ns>/<nad>" or the CNI name of a file/inline network
    ifname: str
    config: str  # the delegate's conflist, byte for byte as it ran
    cni_args: list[tuple[str, str]]
    capability_args: dict[str, Any]
    primary: bool = False
    state: State = "planned"
    result: dict[str, Any] | None = None
    #: What the pod's networks annotation asked for this attachment
    #: (`multihome.engine.hotplug.wish_of`); "" for the configuration's networks.
    wish: str = ""
    #: Who added it: "" the pod's ADD, "hotplug" the annotation controller,
    #: "delegate" the ``/delegate`` API (which the controller leaves alone).
    origin: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CachedAttachment:
        return cls(
            network=str(data["network"]),
            ifname=str(data["ifname"]),
            config=str(data["config"]),
            cni_args=[(str(k), str(v)) for k, v in data.get("cniArgs", [])],
            capability_args=dict(data.get("capabilityArgs", {})),
            primary=bool(data.get("primary", False)),
            state=data["state"] if data.get("state") in ("planned", "added") else "adding",
            result=data.get("result"),
            wish=str(data.get("wish") or ""),
            origin=str(data.get("origin") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        """The entry in the record's JSON; values not copied (asdict deep-copied each result)."""
        out: dict[str, Any] = {
            "network": self.network,
            "ifname": self.ifname,
            "config": self.config,
            "primary": self.primary,
            "state": self.state,
            "result": self.result,
        }
        # Records of networks the annotation did not name stay as they were.
        if self.wish:
            out["wish"] = self.wish
        if self.origin:
            out["origin"] = self.origin
        out["cniArgs"] = [list(pair) for pair in self.cni_args]
        out["capabilityArgs"] = self.capability_args
        return out


@dataclass
class CacheRecord:
    container_id: str
    netns: str
    ifname: str
    cni_version: str
    pod_namespace: str = ""
    pod_name: str = ""
    pod_uid: str = ""
    attachments: list[CachedAttachment] = field(default_factory=list)
    #: The multus configuration the ADD ran with and its CNI_PATH: what a later
    #: change of the pod's networks (`multihome.engine.hotplug`) plans with.
    multus_config: str = ""
    cni_path: list[str] = field(default_factory=list)

    @property
    def pod(self) -> str:
        return f"{self.pod_namespace}/{self.pod_name}" if self.pod_name else self.container_id

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": KIND,
                "containerId": self.container_id,
                "netns": self.netns,
                "ifname": self.ifname,
                "cniVersion": self.cni_version,
                "pod": {
                    "namespace": self.pod_namespace,
                    "name": self.pod_name,
                    "uid": self.pod_uid,
                },
                "attachments": [a.to_dict() for a in self.attachments],
                **({"multusConfig": self.multus_config} if self.multus_config else {}),
                **({"cniPath": self.cni_path} if self.cni_path else {}),
            },
            # No indent: json's C encoder runs only without one (4-5x faster,
            # twice per ADD on its path).  `jq . <record>` reads it.
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> CacheRecord:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise ValueError(f"not a multihome attachment record (kind {data.get('kind')!r})")
        pod = data.get("pod") or {}
        return cls(
            container_id=str(data["containerId"]),
            netns=str(data.get("netns", "")),
            ifname=str(data.get("ifname", "")),
            cni_version=str(data.get("cniVersion", "")),
            pod_namespace=str(pod.get("namespace", "")),
            pod_name=str(pod.get("name", "")),
            pod_uid=str(pod.get("uid", "")),
            attachments=[CachedAttachment.from_dict(a) for a in data.get("attachments", [])],
            multus_config=str(data.get("multusConfig") or ""),
            cni_path=[str(p) for p in data.get("cniPath") or []],
        )


#: Bytes a record may have: a pod with a hundred networks writes about 200 KiB.
MAX_RECORD_BYTES = 4 << 20


def read_regular(path: str | os.PathLike[str], limit: int) -> str:
    """The text of a regular file that is not a symlink, at most ``limit`` bytes."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("it is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"it has {info.st_size} bytes; a record may have {limit}")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"it has more than the {limit} bytes a record may have")
    return data.decode("utf-8")


def _short(value: str, limit: int = 80) -> str:
    return json.dumps(value if len(value) <= limit else value[:limit] + "...")


def _io_error(what: str, path: str | os.PathLike[str], err: OSError) -> CNIError:
    return CNIError(
        Code.IO_FAILURE,
        f"{what} {path}: {err.strerror or err}",
        "the attachment cache (cniDir/multihome) must be a writable directory with free space",
    )


class AttachmentCache:
    """One file per container in ``directory`` (0700), each 0600."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _path(self, container_id: str) -> str:
        # Container IDs are validated by the request layer (no "/", no ".."),
        # the check here keeps a bad caller from writing elsewhere anyway.
        if not container_id or "/" in container_id or container_id.startswith("."):
            raise ValueError(f"invalid container ID {container_id!r}")
        # A str: a pathlib part named for a container is interned (`locks.lock_path`).
        return os.path.join(self.directory, f"{container_id}.json")

    def has(self, container_id: str) -> bool:
        """Whether anything is at the record's path (one ``lstat``; `load` tells what)."""
        return os.path.lexists(self._path(container_id))

    def load(self, container_id: str) -> CacheRecord | None:
        """The record, or None when there is none or it cannot be read (logged).

        Only a regular file of at most `MAX_RECORD_BYTES` that names this
        container is a record: a FIFO would block the reader forever, and a
        symlink to another container's record would release that
        container's leases.
        """
        path = self._path(container_id)
        try:
            record = CacheRecord.from_json(read_regular(path, MAX_RECORD_BYTES))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
            log.warning("ignoring unreadable attachment record %s: %s", path, err)
            return None
        if record.container_id != container_id:
            log.warning(
                "ignoring attachment record %s: it is for container %s",
                path,
                _short(record.container_id),
            )
            return None
        return record

    def save(self, record: CacheRecord, *, replacing: bool = False) -> None:
        """Write the record atomically; a `CNIError` (code 5) naming the path if it fails.

        ``replacing``: this command saved the record before (`atomicfile.write`'s
        ``replacing``).  After a crash of the machine the record is then the
        earlier one or this one: the earlier one names every attachment too,
        and DEL runs every attachment of a record it loads.
        """
        path = self._path(record.container_id)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomicfile.write(path, record.to_json().encode(), mode=0o600, replacing=replacing)
        except OSError as err:
            raise _io_error("cannot write the attachment record", path, err) from err

    def remove(self, container_id: str) -> None:
        path = self._path(container_id)
        try:
            os.unlink(path)
            atomicfile.sync_directory(self.directory)
        except (FileNotFoundError, NotADirectoryError):
            pass  # no record: nothing to remove
        except OSError as err:
            raise _io_error("cannot remove the attachment record", path, err) from err

    def container_ids(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(
            n[: -len(".json")] for n in names if n.endswith(".json") and not n.startswith(".")
        )
