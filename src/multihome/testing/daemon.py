"""The multihome daemon as a child process, for tests, benchmarks and the demo.

`DaemonProcess` writes a daemon configuration into a fresh directory under
/tmp (a unix socket path holds at most 107 bytes, so not pytest's tmp_path),
starts ``python -m multihome daemon`` on a socket there, and waits until
``/readyz`` answers 200 by polling the socket, with a bound.  It can stop the
daemon the way Kubernetes does (SIGTERM), kill it (SIGKILL), and start it
again on the same socket directory.  The daemon's log goes to a file whose
text `log` returns, for a failing test's report.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from multihome.daemon import client

#: Variables that would make the daemon reach for a real cluster.
_CLUSTER_ENV = ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
_POLL = 0.02


class DaemonProcess:
    """``with DaemonProcess(config={...}) as daemon:`` a started, ready daemon.

    ``config`` holds extra daemon configuration keys; ``socketDir`` is set
    here (``daemon.socket_dir``).  Give ``socket_dir`` to share a directory
    with an earlier daemon (a restart).
    """

    def __init__(
        self,
        *,
        config: dict[str, Any] | None = None,
        socket_dir: str | os.PathLike[str] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mhd-", dir="/tmp"))
        self.socket_dir = str(socket_dir) if socket_dir is not None else str(self.root / "s")
        self.config = {"socketDir": self.socket_dir, "logLevel": "debug", **(config or {})}
        self.config_path = self.root / "daemon.json"
        self.log_path = self.root / "daemon.log"
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> str:
        return os.path.join(self.socket_dir, str(self.config.get("socketName", "multihome.sock")))

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> DaemonProcess:
        self.config_path.write_text(json.dumps(self.config, indent=1))
        argv = [sys.executable, "-m", "multihome", "daemon", "--config", str(self.config_path)]
        if os.geteuid() != 0:
            argv.append("--allow-non-root")
        env = {k: v for k, v in os.environ.items() if k not in _CLUSTER_ENV}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Poll ``/readyz`` until it answers 200; fail with the daemon's log after the bound."""
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"the daemon exited with {self.proc.returncode} before it was ready:\n"
                    + self.log()
                )
            try:
                answer = client.request(self.socket_path, "GET", "/readyz", timeout=2.0)
            except client.DaemonUnavailable as err:
                last = str(err)
            else:
                if answer.status == 200:
                    return
                last = f"/readyz answered {answer.status}: {answer.body.decode(errors='replace')}"
            time.sleep(_POLL)
        raise TimeoutError(
            f"the daemon was not ready within {self.ready_timeout:g} s ({last}):\n" + self.log()
        )

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the exit; its code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise

    def terminate(self) -> None:
        """SIGTERM without waiting (graceful shutdown tests)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a node reboot would end it."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def close(self) -> None:
        """Stop the daemon if it runs and remove the directory."""
        try:
            if self.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.stop(timeout=30.0)
                self.kill()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DaemonProcess:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- asking it ----------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = client.get_json(self.socket_path, "/shim/v1/info")
        return info

    def attachments(self) -> list[dict[str, Any]]:
        listing: list[dict[str, Any]] = client.get_json(self.socket_path, "/shim/v1/attachments")[
            "attachments"
        ]
        return listing

    def readyz(self) -> int:
        return client.request(self.socket_path, "GET", "/readyz", timeout=5.0).status

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def shim_binary() -> Path:
    """The static shim: ``$MULTIHOME_SHIM``, else ``shim/multihome-shim`` of this checkout."""
    override = os.environ.get("MULTIHOME_SHIM")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "shim" / "multihome-shim"
