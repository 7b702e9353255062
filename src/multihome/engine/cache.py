"""The attachment cache: what was run for each container, so DEL needs nothing else.

A record is written before the first delegate runs and again after each
one, so that a DEL after a crash, a deleted NAD, a deleted pod or an API
outage still knows every delegate configuration (its exact bytes), its
interface name, its CNI_ARGS and capability arguments, and its result.
Writes are atomic (temp file, fsync, rename, fsync of the directory): a
node that loses power mid-write keeps the old record, never half a file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from multihome import atomicfile

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
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cniArgs"] = [list(pair) for pair in out.pop("cni_args")]
        out["capabilityArgs"] = out.pop("capability_args")
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
            },
            indent=1,
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
        )


class AttachmentCache:
    """One file per container in ``directory`` (0700), each 0600."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _path(self, container_id: str) -> Path:
        # Container IDs are validated by the request layer (no "/", no ".."),
        # the check here keeps a bad caller from writing elsewhere anyway.
        if not container_id or "/" in container_id or container_id.startswith("."):
            raise ValueError(f"invalid container ID {container_id!r}")
        return self.directory / f"{container_id}.json"

    def load(self, container_id: str) -> CacheRecord | None:
        """The record, or None when there is none or it cannot be read (logged)."""
        path = self._path(container_id)
        try:
            return CacheRecord.from_json(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("ignoring unreadable attachment record %s: %s", path, err)
            return None

    def save(self, record: CacheRecord) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomicfile.write(self._path(record.container_id), record.to_json().encode(), mode=0o600)

    def remove(self, container_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(container_id).unlink()
            atomicfile.sync_directory(self.directory)

    def container_ids(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(
            n[: -len(".json")] for n in names if n.endswith(".json") and not n.startswith(".")
        )
