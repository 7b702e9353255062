"""podman 4.3 (CNI backend, runc) runs a container through the shim and the daemon.

podman reads only ``.conflist`` files, asks VERSION before every ADD and
passes ``K8S_POD_NAME`` (the container's name) without a namespace: this
plays docs/runtimes.md's podman setup with the conflist config generation
writes (``cniConfigFormat: conflist``).  podman runs with its own
containers.conf, storage and network config dir under the test's scratch
dir, never with its default network; the container is a static ``sleep``
built here (no image can be pulled).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from multihome.daemon.confgen import generate
from multihome.testing.daemon import DaemonProcess, shim_binary
from multihome.testing.lab import Lab

pytestmark = pytest.mark.netns

SLEEPER = "#include <unistd.h>\nint main(void) { sleep(600); return 0; }\n"
# This machine's sandbox refuses setrlimit, which runc does for the rlimits podman
# always sets: drop them from the bundle (a real node needs no wrapper).
RUNC_WRAPPER = """#!/usr/bin/python3
import json, os, sys
args = sys.argv[1:]
if "create" in args and "--bundle" in args:
    path = os.path.join(args[args.index("--bundle") + 1], "config.json")
    with open(path) as f:
        spec = json.load(f)
    spec.get("process", {}).pop("rlimits", None)
    with open(path, "w") as f:
        json.dump(spec, f)
os.execv("RUNC", ["runc", *args])
"""


def _tools() -> tuple[str, str, str]:
    podman, runc = shutil.which("podman"), shutil.which("runc")
    cc = shutil.which("musl-gcc") or shutil.which("gcc")
    if os.geteuid() != 0 or not (podman and runc and cc):
        pytest.skip("needs root, podman, runc and a C compiler")
    if not shim_binary().exists():
        pytest.skip("the shim is not built: make -C shim")
    return podman, runc, cc


class Podman:
    def __init__(self, root: Path, podman: str, runc: str) -> None:
        self.root = root
        wrapper = root / "runc"
        wrapper.write_text(RUNC_WRAPPER.replace("RUNC", runc))
        wrapper.chmod(0o755)
        self.netd = root / "netd"
        self.netd.mkdir()
        conf = root / "containers.conf"
        conf.write_text(
            f'[network]\nnetwork_backend = "cni"\nnetwork_config_dir = "{self.netd}"\n'
            f'cni_plugin_dirs = ["{shim_binary().parent}", "/usr/lib/cni"]\n'
        )
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.argv = [
            podman,
            "--root",
            str(root / "storage"),
            "--runroot",
            str(root / "run"),
            "--storage-driver",
            "vfs",
            "--runtime",
            str(wrapper),
        ]

    def __call__(self, *args: str, check: bool = True) -> str:
        argv = [*self.argv, *args]
        proc = subprocess.run(
            argv, check=False, env=self.env, capture_output=True, text=True, timeout=120
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {proc.stderr}")
        return proc.stdout.strip()


@pytest.fixture
def podman(lab: Lab) -> Iterator[Podman]:
    tool, runc, cc = _tools()
    the_podman = Podman(lab.tmpdir(), tool, runc)
    rootfs = the_podman.root / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    source = the_podman.root / "sleep.c"
    source.write_text(SLEEPER)
    subprocess.run([cc, "-static", "-Os", "-o", str(rootfs / "bin/sleep"), str(source)], check=True)
    tar = the_podman.root / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    the_podman("import", str(tar), "localhost/multihome-sleep:test")
    try:
        yield the_podman
    finally:
        the_podman("rm", "-fa", check=False)
        the_podman("system", "reset", "-f", check=False)


def test_podman_runs_a_container_through_the_generated_conflist(lab: Lab, podman: Podman) -> None:
    bridge = lab.name("pm")
    ipam = podman.root / "ipam"
    cni_dir = podman.root / "cni"
    primary = podman.root / "10-pods.conflist"
    primary_conf = {
        "cniVersion": "1.0.0",
        "name": "pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam),
                    "ranges": [[{"subnet": "10.250.77.0/24"}]],
                },
            }
        ],
    }
    primary.write_text(json.dumps(primary_conf))
    with DaemonProcess() as daemon:
        daemon_config = {
            "cniVersion": "1.0.0",
            "cniConfigFormat": "conflist",
            "daemonSocketDir": daemon.socket_dir,
            "cniDir": str(cni_dir),
            "binDir": "/usr/lib/cni",
        }
        text = generate(daemon_config, primary_path=str(primary), primary=primary.read_text())
        (podman.netd / "00-multihome.conflist").write_text(text)
        name = lab.name("ctr")

        podman("run", "-d", "--name", name, "--network", "multus-cni-network",
               "localhost/multihome-sleep:test", "/bin/sleep")  # fmt: skip

        netns = podman("inspect", "--format", "{{.NetworkSettings.SandboxKey}}", name)
        links = lab.run(None, "nsenter", f"--net={netns}", "ip", "-j", "addr").stdout
        eth0 = next(link for link in json.loads(links) if link["ifname"] == "eth0")
        assert [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"] == ["10.250.77.2"]
        [record] = (cni_dir / "multihome").glob("*.json")
        cached = json.loads(record.read_text())
        # podman names the container only: the pod is looked for in "default".
        assert cached["pod"] == {"namespace": "default", "name": name, "uid": ""}
        # ... and the delegates get the namespace multihome assumed, as with any runtime.
        args = cached["attachments"][0]["cniArgs"]
        assert ["K8S_POD_NAME", name] in args and ["K8S_POD_NAMESPACE", "default"] in args

        podman("rm", "-f", name)

        assert list((cni_dir / "multihome").glob("*.json")) == []
        leases = [p.name for p in (ipam / "pods").iterdir() if p.name[0].isdigit()]
        assert leases == []  # host-local keeps only its lock and last_reserved_ip
