"""What the engine imports where it is first needed, the daemon imports at start.

The engine defers its planning layer for the thin plugin's DEL
(tests/netns/test_thin_imports.py); `import_planning` is the list a
long-lived process takes at once.  Read from the engine's source, so a
deferred import added there and not to the list fails here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import multihome.engine.engine as engine_module

SOURCE = Path(engine_module.__file__)


def _deferred(tree: ast.Module) -> set[str]:
    """Modules imported inside functions of the engine other than `import_planning`.

    Not the Kubernetes client that `Engine._with_kube` makes: that is the thin
    plugin's own (the daemon has its source), made where a call needs it.
    """
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if node.name == "import_planning":
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom):
                base = inner.module or ""
                if inner.level:  # relative: from . import x, from .probing import y
                    base = "multihome.engine" + (f".{base}" if base else "")
                    found.update(f"{base}.{a.name}" for a in inner.names if not inner.module)
                    if inner.module:
                        found.add(base)
                else:
                    found.add(base)
    return {m for m in found if not m.startswith("multihome.cluster.")}


def _imported_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_import_planning_imports_every_module_the_engine_defers() -> None:
    deferred = _deferred(ast.parse(SOURCE.read_text()))
    assert "multihome.networks.attachment" in deferred  # the reading works
    assert "multihome.engine.hotplug" in deferred
    before = _imported_after("import multihome.engine.engine")
    after = _imported_after("import multihome.engine.engine as e\ne.import_planning()")
    assert deferred - before, "nothing is deferred any more: the thin DEL's test says why it is"
    assert deferred <= after, sorted(deferred - after)


def test_the_daemon_has_the_planning_layer_before_its_first_request() -> None:
    after = _imported_after(
        "from multihome.daemon.config import DaemonConfig\n"
        "from multihome.daemon.server import Daemon\n"
        "Daemon(DaemonConfig())"
    )
    assert _deferred(ast.parse(SOURCE.read_text())) <= after
