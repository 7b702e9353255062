"""Manifests read for lint and explain: every object, where it came from, what it is.

Inputs are files and directories of YAML or JSON: Kubernetes objects (one
or several documents per file, ``List`` objects), a ``00-multus.conf``-style
multus configuration, the daemon's configuration, plain CNI configuration
files.  Each object keeps its file and the line its document (or its item
of a ``List``) starts on, so that a finding can point at it like a compiler.
Workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob)
become the pod their template would make, named after the workload.

A file that cannot be read or parsed is an `InputError` naming the file,
line and column; it never stops the others from being read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Object = dict[str, Any]

EXTENSIONS = (".yaml", ".yml", ".json", ".conf", ".conflist")
_JSON_EXTENSIONS = (".json", ".conf", ".conflist")
#: Workload kinds and where their pod template is.
WORKLOADS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
NAD_KIND = "NetworkAttachmentDefinition"
#: Kinds of inputs that are not Kubernetes objects.
MULTUS_CONFIG = "MultusConfig"
DAEMON_CONFIG = "DaemonConfig"
CNI_CONFIG = "CNIConfig"


@dataclass
class Located:
    """One object of the input, with the place it was read from."""

    kind: str
    obj: Object
    file: str = ""
    line: int = 0
    #: The file's text, for configurations that are checked from their bytes.
    text: str = ""
    #: For a workload's pod: the workload's kind and how many pods it makes at once.
    workload: str = ""
    copies: str = ""

    @property
    def namespace(self) -> str:
        meta = self.obj.get("metadata") if isinstance(self.obj, dict) else None
        value = meta.get("namespace") if isinstance(meta, dict) else ""
        return value if isinstance(value, str) else ""

    @property
    def name(self) -> str:
        meta = self.obj.get("metadata") if isinstance(self.obj, dict) else None
        value = meta.get("name") if isinstance(meta, dict) else None
        if isinstance(value, str):
            return value
        return str(self.obj.get("name") or "") if isinstance(self.obj, dict) else ""

    @property
    def title(self) -> str:
        """``Kind namespace/name`` (the workload's kind for a template)."""
        kind = self.workload or self.kind
        if self.kind in (MULTUS_CONFIG, DAEMON_CONFIG, CNI_CONFIG):
            return f"{kind} {self.name}".rstrip()
        namespace = self.namespace or "default"
        return f"{kind} {namespace}/{self.name}"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file and self.line else self.file


@dataclass(frozen=True)
class InputError:
    file: str
    message: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}" + (f":{self.column}" if self.column else "")
        return f"{where}: {self.message}"


def files_of(paths: Iterable[str]) -> tuple[list[Path], list[InputError]]:
    """The manifest files of the paths, directories walked in sorted order."""
    out: list[Path] = []
    problems: list[InputError] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs.sort()
                out.extend(Path(root) / n for n in sorted(names) if n.endswith(EXTENSIONS))
        elif path.exists():
            out.append(path)
        else:
            problems.append(InputError(text, "no such file or directory"))
    return out, problems


def load(paths: Iterable[str]) -> tuple[list[Located], list[InputError]]:
    """Every object of the paths, and what could not be read."""
    files, problems = files_of(paths)
    objects: list[Located] = []
    for path in files:
        try:
            objects.extend(load_file(path))
        except _Unreadable as err:
            problems.append(err.error)
    return objects, problems


class _Unreadable(Exception):
    def __init__(self, error: InputError) -> None:
        super().__init__(str(error))
        self.error = error


def load_file(path: Path) -> list[Located]:
    name = str(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise _Unreadable(InputError(name, f"cannot read: {err}")) from None
    if path.suffix in _JSON_EXTENSIONS or text.lstrip().startswith("{"):
        try:
            docs: list[tuple[int, Any, list[int]]] = [(1, json.loads(text), [])]
        except (ValueError, RecursionError) as err:
            line = getattr(err, "lineno", 0)
            column = getattr(err, "colno", 0)
            message = getattr(err, "msg", str(err))
            raise _Unreadable(
                InputError(name, f"not valid JSON: {message}", line, column)
            ) from None
    else:
        docs = _yaml_documents(name, text)
    out: list[Located] = []
    for line, doc, item_lines in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise _Unreadable(
                InputError(name, f"a document is a {type(doc).__name__}, not an object", line)
            )
        out.extend(_classify(doc, name, line, text, item_lines))
    return out


def _yaml_documents(name: str, text: str) -> list[tuple[int, Any, list[int]]]:
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = base(text)
    out: list[tuple[int, Any, list[int]]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            items = _item_lines(node)
            out.append((node.start_mark.line + 1, loader.construct_document(node), items))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        raise _Unreadable(InputError(name, f"not valid YAML: {problem}", line, column)) from None
    except yaml.YAMLError as err:
        raise _Unreadable(InputError(name, f"not valid YAML: {err}")) from None
    finally:
        loader.dispose()
    return out


def _item_lines(node: Any) -> list[int]:
    """The start lines of ``items`` of a List document."""
    value = getattr(node, "value", None)
    if not isinstance(value, list):
        return []
    for pair in value:
        if isinstance(pair, tuple) and getattr(pair[0], "value", None) == "items":
            items = getattr(pair[1], "value", None)
            if isinstance(items, list):
                return [item.start_mark.line + 1 for item in items]
    return []


def _classify(
    doc: Object, file: str, line: int, text: str, item_lines: list[int]
) -> Iterator[Located]:
    kind = doc.get("kind")
    if kind == "List" or (isinstance(kind, str) and kind.endswith("List") and "items" in doc):
        items = doc.get("items") or []
        for index, item in enumerate(items if isinstance(items, list) else ()):
            if isinstance(item, dict):
                at = item_lines[index] if index < len(item_lines) else line
                yield from _classify(item, file, at, text, [])
        return
    if isinstance(kind, str) and kind:
        if kind in WORKLOADS:
            pod = _template_pod(doc, kind)
            if pod is not None:
                yield Located("Pod", pod, file, line, workload=kind, copies=_copies(doc, kind))
            return
        yield Located(kind, doc, file, line)
        return
    # Not a Kubernetes object: a configuration file.
    if "cniVersion" in doc and (
        "clusterNetwork" in doc
        or "delegates" in doc
        or str(doc.get("type", "")).startswith(("multus", "multihome"))
    ):
        yield Located(MULTUS_CONFIG, doc, file, line, text=text)
    elif "cniVersion" in doc:
        yield Located(CNI_CONFIG, doc, file, line, text=text)
    else:
        yield Located(DAEMON_CONFIG, doc, file, line, text=text)


def _template_pod(doc: Object, kind: str) -> Object | None:
    template: Any = doc
    for key in WORKLOADS[kind]:
        template = template.get(key) if isinstance(template, dict) else None
    if not isinstance(template, dict):
        return None
    meta = _object(doc.get("metadata"))
    tmeta = _object(template.get("metadata"))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": meta.get("name") or "",
            "namespace": meta.get("namespace") or tmeta.get("namespace") or "",
            "annotations": tmeta.get("annotations") or {},
            "labels": tmeta.get("labels") or {},
        },
        "spec": template.get("spec") or {},
    }


def _copies(doc: Object, kind: str) -> str:
    """How many pods of the template run at once, when that can be more than one."""
    spec = _object(doc.get("spec"))
    if kind == "DaemonSet":
        return "one pod per node"
    if kind in ("Job", "CronJob"):
        if kind == "CronJob":
            spec = _object(_object(spec.get("jobTemplate")).get("spec"))
        count = spec.get("parallelism", 1)
        return f"{count} parallel pods" if isinstance(count, int) and count > 1 else ""
    count = spec.get("replicas", 1)
    return f"{count} replicas" if isinstance(count, int) and count > 1 else ""


def _object(value: Any) -> Object:
    return value if isinstance(value, dict) else {}
