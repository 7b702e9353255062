"""Pods and NADs from a directory of manifests, as `kubectl apply -f DIR` would take them.

The embedded default source (config key ``manifestDir``): the demo, podman
or containerd hosts without Kubernetes, and offline ``lint``/``explain`` use
it.  Every ``*.yaml``, ``*.yml`` and ``*.json`` file directly in the
directory is read (several documents per file, ``List`` kinds too) on each
request, so an edit shows at the next CNI call.  What the engine reports
goes into the same directory, where people and tests can read it:

* ``status/<namespace>.<pod>.json``: the network-status annotation value;
* ``events.jsonl``: one JSON event per line, the newest last.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .source import EventType, Object, pod_key

_SUFFIXES = (".yaml", ".yml", ".json")
_NAD_KINDS = {"NetworkAttachmentDefinition", "network-attachment-definition"}


class ManifestError(ValueError):
    """A manifest that cannot be read; the message names the file."""


class LocalSource:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        # Parsed files by path, kept while (mtime, size, inode) stay the same:
        # a daemon answers many requests from one directory.
        self._parsed: dict[Path, tuple[tuple[int, int, int], list[Object]]] = {}

    def objects(self) -> list[Object]:
        """Every object in the directory, in file-name order."""
        try:
            files = sorted(p for p in self.directory.iterdir() if p.suffix in _SUFFIXES)
        except FileNotFoundError as err:
            raise ManifestError(f"manifest directory {self.directory} does not exist") from err
        except NotADirectoryError as err:
            raise ManifestError(
                f"manifest directory {self.directory} is not a directory (manifestDir names"
                " a directory of Pod and NAD manifests)"
            ) from err
        except OSError as err:
            raise ManifestError(
                f"cannot list manifest directory {self.directory}: {err.strerror or err}"
            ) from err
        out: list[Object] = []
        for path in files:
            try:
                info = path.stat()
            except FileNotFoundError:
                continue  # removed since the listing
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
            cached = self._parsed.get(path)
            if cached is None or cached[0] != stamp:
                cached = (stamp, _load(path))
                self._parsed[path] = cached
            out.extend(cached[1])
        for gone in set(self._parsed) - set(files):
            del self._parsed[gone]
        return out

    def _find(self, kinds: set[str], namespace: str, name: str) -> Object | None:
        for obj in self.objects():
            if obj.get("kind") in kinds and pod_key(obj) == (namespace, name):
                return obj
        return None

    async def get_pod(self, namespace: str, name: str, *, uid: str = "") -> Object | None:
        return self._find({"Pod"}, namespace, name)

    def cached_pod(self, namespace: str, name: str) -> Object | None:
        return self._find({"Pod"}, namespace, name)

    async def get_nad(self, namespace: str, name: str) -> Object | None:
        return self._find(_NAD_KINDS, namespace, name)

    def status_path(self, namespace: str, name: str) -> Path:
        return self.directory / "status" / f"{namespace}.{name}.json"

    async def set_network_status(self, pod: Object, status: str | None) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        current = self._find({"Pod"}, *pod_key(pod))
        if (
            uid
            and current is not None
            and (current.get("metadata") or {}).get("uid")
            not in (
                None,
                "",
                uid,
            )
        ):
            return  # another incarnation of the name: not the pod this status is about
        path = self.status_path(*pod_key(pod))
        if status is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(status)
        tmp.replace(path)

    async def emit_event(self, pod: Object, *, type: EventType, reason: str, message: str) -> None:
        namespace, name = pod_key(pod)
        event = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "namespace": namespace,
            "pod": name,
            "type": type,
            "reason": reason,
            "message": message,
        }
        with open(self.directory / "events.jsonl", "a") as handle:
            handle.write(json.dumps(event) + "\n")

    def events(self) -> list[dict[str, Any]]:
        try:
            lines = (self.directory / "events.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def network_status(self, namespace: str, name: str) -> list[dict[str, Any]] | None:
        try:
            return json.loads(self.status_path(namespace, name).read_text())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None


def _load(path: Path) -> list[Object]:
    """The objects of one manifest file (JSON parsed as JSON: it is much faster)."""
    try:
        text = path.read_text()
        if path.suffix == ".json":
            docs = [json.loads(text)]
        else:
            import yaml  # only when YAML is read: the thin plugin's import path stays short

            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            docs = list(yaml.load_all(text, Loader=loader))
    except (OSError, ValueError, RecursionError) as err:
        raise ManifestError(f"cannot read manifest {path}: {err}") from err
    except Exception as err:  # yaml.YAMLError, without importing yaml for JSON files
        raise ManifestError(f"cannot read manifest {path}: {err}") from err
    out: list[Object] = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List":
            out.extend(i for i in doc.get("items") or [] if isinstance(i, dict))
        elif isinstance(doc, dict):
            out.append(doc)
    return out
