"""`make e2e-image`: build the node image and run it as the kubelet runs the DaemonSet.

No base image can be pulled here, so the image's root file system is made
from Debian packages (mmdebstrap: python3, iproute2, util-linux) plus the
project's wheel with the ``devices`` extra and its runtime dependencies in a
venv, and the static shim;
`podman import` makes an OCI image of it.  deploy/Dockerfile describes the
same content on a slim Python base.

Then, with a temporary host root (etc/cni/net.d, opt/cni/bin with the
reference plugins, var/lib/cni, run/multihome) and the host's /run/netns:

1. the init container of deploy/kubernetes/base/daemonset.yaml installs the shim
   into the host's bin dir (no capabilities, read-only root);
2. the daemon container runs with the DaemonSet's mounts, host network and
   PID namespaces, privileged, its config from the ConfigMap (plus
   manifestDir: pods and NADs from files instead of an API server);
3. from the "host": /readyz and /healthz answer, the daemon wrote
   00-multihome.conf from the cluster network's file, a pod sandbox is
   attached through the installed shim (cluster network + a macvlan NAD),
   /metrics counts the ADD, DEL removes everything; a pod whose NAD names
   a resourceName gets its device from a fake kubelet on the host's
   PodResources socket (through the DaemonSet's read-only mount, with the
   image's gRPC client), and SIGTERM stops the daemon within the grace period.

The runtime's side runs in a private mount namespace in which the host
root's directories are bound over /etc/cni/net.d, /opt/cni/bin and
/run/multihome, so the shim sees exactly what a node would give it.
Everything made is removed at the end, pass or fail.  Run as root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from multihome.cluster.devices import DEFAULT_SOCKET as KUBELET_SOCKET
from multihome.daemon.install import DEFAULT_SHIM
from multihome.testing.kubelet import FakeKubelet
from multihome.testing.lab import Lab

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"
SUITE = "bookworm"
#: The daemon's runtime needs; no CA bundle (the API server's CA comes with the
#: service account), no apt (the image is never updated in place).
PACKAGES = ("python3", "iproute2", "util-linux")
EXCLUDED = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
#: The extra the image installs: the PodResources client (SR-IOV and other device networks).
EXTRAS = "[devices]"
TAG = "localhost/multihome:e2e"
#: Where the runtime's side sees the node's directories (the DaemonSet's hostPaths).
HOST_PATHS = ("/etc/cni/net.d", "/opt/cni/bin", "/var/lib/cni", "/run/multihome")
REFERENCE_PLUGINS = Path("/usr/lib/cni")
VF_RESOURCE, VF = "example.com/vf", "0000:03:00.2"
#: Container limits within this machine's own: podman as root would raise
#: RLIMIT_NOFILE and RLIMIT_NPROC beyond the hard limits runc may set here.
ULIMITS = (
    "--ulimit",
    "nofile={}:{}".format(*resource.getrlimit(resource.RLIMIT_NOFILE)),
    "--ulimit",
    "nproc=32768:32768",
)


class Failed(Exception):
    pass


def step(message: str) -> None:
    print(f"e2e-image: {message}", flush=True)


def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    kw.setdefault("text", True)
    return subprocess.run(args, check=kw.pop("check", True), **kw)


# -- the image -------------------------------------------------------------------------


def build_image(work: Path, podman: list[str]) -> dict[str, float]:
    """Wheel + dependencies, shim, rootfs from Debian, OCI image; seconds per stage."""
    took: dict[str, float] = {}
    start = time.monotonic()
    wheels = work / "wheels"
    pip = [sys.executable, "-m", "pip", "-q"]
    run(*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT))
    [wheel] = wheels.glob("multihome-*.whl")
    run(*pip, "download", "-d", str(wheels), f"{wheel}{EXTRAS}")
    run(*pip, "download", "--no-deps", "-d", str(work / "pip"), "pip")
    [pip_wheel] = (work / "pip").glob("pip-*.whl")
    run("make", "-s", "-C", str(ROOT / "shim"))
    took["wheel and shim"] = time.monotonic() - start

    start = time.monotonic()
    # Installed into a venv in the image by the image's own Python, from the
    # wheels only; pip itself runs from its wheel and stays out of the image.
    hook = (
        f'set -e; mkdir -p "$1/tmp/wheels" "$1{os.path.dirname(DEFAULT_SHIM)}"; '
        f'cp {wheels}/*.whl {pip_wheel} "$1/tmp/wheels/"; '
        f'cp {ROOT}/shim/multihome-shim "$1{DEFAULT_SHIM}"; '
        'chroot "$1" python3 -m venv --without-pip /opt/multihome; '
        f'chroot "$1" /opt/multihome/bin/python /tmp/wheels/{pip_wheel.name}/pip install -q '
        f"--no-index --no-compile --find-links /tmp/wheels 'multihome{EXTRAS}'; "
        'ln -s /opt/multihome/bin/multihome "$1/usr/local/bin/multihome"; '
        'rm -rf "$1/tmp/wheels" "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*'
    )
    rootfs = work / "rootfs.tar"
    run(
        "mmdebstrap",
        "--quiet",
        # Essential packages and ours, no recommends; /usr merged by mmdebstrap's
        # hook instead of the usrmerge package (which would pull in perl).
        "--variant=essential",
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        '--aptopt=APT::Install-Recommends "false"',
        f"--include={','.join(PACKAGES)}",
        *[f"--dpkgopt=path-exclude={p}" for p in EXCLUDED],
        f"--customize-hook={hook}",
        SUITE,
        str(rootfs),
    )
    took["root file system (mmdebstrap)"] = time.monotonic() - start

    start = time.monotonic()
    version = _project_version()
    changes = [
        'ENTRYPOINT ["multihome"]',
        'CMD ["daemon", "--config", "/etc/multihome/daemon-config.json"]',
        "ENV PATH=/opt/multihome/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LABEL org.opencontainers.image.title=multihome",
        f"LABEL org.opencontainers.image.version={version}",
        "LABEL org.opencontainers.image.licenses=Apache-2.0",
    ]
    args = [a for c in changes for a in ("--change", c)]
    run(*podman, "import", "-q", *args, str(rootfs), TAG, stdout=subprocess.DEVNULL)
    took["OCI image (podman import)"] = time.monotonic() - start
    return took


def _project_version() -> str:
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    return "dev"


def image_size(podman: list[str]) -> int:
    out = run(*podman, "image", "inspect", "--format", "{{.Size}}", TAG, capture_output=True)
    return int(out.stdout.strip())


# -- podman, isolated from the machine's own configuration ------------------------------


def podman_command(work: Path) -> tuple[list[str], dict[str, str]]:
    """podman with its own storage and config: runc (crun fails on these cgroups),
    cgroupfs, and a network config dir of its own so /etc/cni/net.d stays untouched."""
    conf = work / "containers.conf"
    conf.write_text(
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{work}/events.log"\n'
        "[network]\n"
        f'network_config_dir = "{work}/networks"\n'
        'default_network = "none"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    base = ["podman", "--root", str(work / "storage"), "--runroot", str(work / "run")]
    base += ["--storage-driver", "overlay"]
    return base, env


# -- the node ---------------------------------------------------------------------------


def daemonset() -> dict[str, Any]:
    [ds] = [d for d in yaml.safe_load_all((DEPLOY / "base" / "daemonset.yaml").read_text()) if d]
    return ds


def write_nad(
    manifests: Path, config: dict[str, Any], annotations: dict[str, str] | None = None
) -> None:
    """``nad-<name>.json`` in the manifest dir the daemon reads (named by the config)."""
    name = config["name"]
    metadata: dict[str, Any] = {"name": name, "namespace": "default"}
    if annotations:
        metadata["annotations"] = annotations
    nad = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": metadata,
        "spec": {"config": json.dumps(config)},
    }
    (manifests / f"nad-{name}.json").write_text(json.dumps(nad))


def write_pod(manifests: Path, name: str, uid: str, networks: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": uid,
            "annotations": {"k8s.v1.cni.cncf.io/networks": networks},
        },
    }
    (manifests / f"pod-{name}.json").write_text(json.dumps(pod))


def daemon_config(manifest_dir: str, port: int) -> dict[str, Any]:
    [cm] = [d for d in yaml.safe_load_all((DEPLOY / "base" / "configmap.yaml").read_text()) if d]
    config: dict[str, Any] = json.loads(cm["data"]["daemon-config.json"])
    config["metricsPort"] = port  # a free one: this machine is shared
    config["manifestDir"] = manifest_dir
    return config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mounts(pod: dict[str, Any], container: dict[str, Any], host: Path) -> list[str]:
    """The container's volumeMounts as podman -v options, hostPaths under ``host``."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    out = []
    for m in container["volumeMounts"]:
        volume = volumes[m["name"]]
        if "hostPath" in volume:
            path = volume["hostPath"]["path"]
            # The namespaces are the kernel's: the host's own /run/netns.
            source = Path(path) if path == "/run/netns" else host / path.lstrip("/")
        else:
            source = host / "configmap" / m["name"]
        source.mkdir(parents=True, exist_ok=True)
        options = ["ro"] if m.get("readOnly") else ["rw"]
        if m.get("mountPropagation") == "HostToContainer":
            options.append("rslave")
        out += ["-v", f"{source}:{m['mountPath']}:{','.join(options)}"]
    return out


def wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def shim(host: Path, command: str, env: dict[str, str], stdin: bytes) -> dict[str, Any]:
    """The container runtime: the installed shim, seeing the host root at the node's paths."""
    binds = " && ".join(f"mount --bind {host / p.lstrip('/')} {p}" for p in HOST_PATHS)
    script = f"{binds} && exec /opt/cni/bin/multihome-shim"
    full = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "CNI_COMMAND": command,
        "CNI_PATH": "/opt/cni/bin",
        **env,
    }
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        input=stdin,
        env=full,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise Failed(
            f"shim {command} exited {proc.returncode}: {proc.stdout.decode()[:2000]} "
            f"{proc.stderr.decode()[:2000]}"
        )
    return json.loads(proc.stdout) if proc.stdout.strip() else {}


@contextlib.contextmanager
def host_dirs() -> Iterator[None]:
    """Mount points for the runtime's private binds; only those this run made are removed."""
    made = []
    for path in HOST_PATHS:
        p = Path(path)
        missing = []
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            d.mkdir()
            made.append(d)
    try:
        yield
    finally:
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()


def scenario(work: Path, podman: list[str], env: dict[str, str], lab: Lab) -> dict[str, float]:
    took: dict[str, float] = {}
    ds = daemonset()
    pod = ds["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    [daemon] = pod["containers"]
    host = work / "host"
    port = free_port()

    # The node: a cluster network (bridge) as the primary, reference plugins, a LAN.
    net_d = host / "etc/cni/net.d"
    bin_dir = host / "opt/cni/bin"
    for d in (net_d, bin_dir, host / "var/lib/cni", host / "manifests"):
        d.mkdir(parents=True, exist_ok=True)
    for plugin in REFERENCE_PLUGINS.iterdir():
        shutil.copy2(plugin, bin_dir / plugin.name)
    bridge = lab.name("cni")
    (net_d / "10-cluster.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "cluster",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": bridge,
                        "isGateway": True,
                        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.250.7.0/24"}]]},
                    }
                ],
            }
        )
    )
    lan = lab.macvlan_parent("lan")
    manifests = host / "manifests"
    nad_config = {
        "cniVersion": "1.0.0",
        "name": "lan",
        "plugins": [
            {
                "type": "macvlan",
                "master": lan,
                "mode": "bridge",
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "172.31.77.0/24"}]]},
            }
        ],
    }
    write_nad(manifests, nad_config)
    uid = "5f0c5bd2-0d6a-4c4e-9e38-2d1b8a1f0e01"
    write_pod(manifests, "web", uid, "lan")
    # A network whose plugin takes a while: an ADD in flight when SIGTERM comes.
    slow = bin_dir / "slow-macvlan"
    slow.write_text(
        "#!/bin/sh\n# e2e-image: macvlan, 2 s late\nsleep 2\nexec /opt/cni/bin/macvlan\n"
    )
    slow.chmod(0o755)
    slow_config = {
        "cniVersion": "1.0.0",
        "name": "slow",
        "plugins": [{**nad_config["plugins"][0], "type": "slow-macvlan"}],
    }
    write_nad(manifests, slow_config)
    slow_uid = "5f0c5bd2-0d6a-4c4e-9e38-2d1b8a1f0e02"
    write_pod(manifests, "db", slow_uid, "slow")
    # A device network: its plugin (macvlan, which ignores deviceID) keeps its ADD input.
    vf_plugin = bin_dir / "vf-macvlan"
    vf_plugin.write_text(
        "#!/bin/sh\n# e2e-image: macvlan, keeping the ADD's config\n"
        'if [ "$CNI_COMMAND" = ADD ]; then tee /var/lib/cni/vf-add.json | /opt/cni/bin/macvlan; '
        "else exec /opt/cni/bin/macvlan; fi\n"
    )
    vf_plugin.chmod(0o755)
    vf_config = {
        "cniVersion": "1.0.0",
        "name": "vf",
        "plugins": [
            {
                **nad_config["plugins"][0],
                "type": "vf-macvlan",
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "172.31.78.0/24"}]]},
            }
        ],
    }
    write_nad(manifests, vf_config, {"k8s.v1.cni.cncf.io/resourceName": VF_RESOURCE})
    vf_uid = "5f0c5bd2-0d6a-4c4e-9e38-2d1b8a1f0e03"
    write_pod(manifests, "vf", vf_uid, "vf")
    manifest_mount = "/etc/multihome-manifests"
    config_dir = host / "configmap" / "config"
    config_dir.mkdir(parents=True)
    (config_dir / "daemon-config.json").write_text(
        json.dumps(daemon_config(manifest_mount, port), indent=1)
    )

    # 1. The init container, as the DaemonSet says: no capabilities, read-only root.
    start = time.monotonic()
    step("init container: multihome install")
    run(
        *podman, "run", "--rm", "--network", "host", "--pid", "host", "--user", "0", *ULIMITS,
        "--cap-drop", "ALL", "--read-only", "--security-opt", "no-new-privileges",
        *mounts(pod, init, host), TAG, *init["command"][1:], env=env,
    )  # fmt: skip
    installed = bin_dir / "multihome-shim"
    if not os.access(installed, os.X_OK):
        raise Failed(f"the init container did not install {installed}")
    took["init container"] = time.monotonic() - start

    # /run/netns is a (shared) mount point once a namespace exists; the
    # sandbox made after the daemon started must still show up inside it.
    lab.netns("first")

    # 2. The daemon container.
    name = f"{lab.prefix}-daemon"
    start = time.monotonic()
    step("daemon container: multihome daemon")
    run(
        *podman, "run", "-d", "--name", name, "--network", "host", "--pid", "host", *ULIMITS,
        "--privileged", "-e", "NODE_NAME=e2e-node",
        "-v", f"{manifests}:{manifest_mount}:rw",
        *mounts(pod, daemon, host), TAG, *daemon["command"][1:],
        env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for("/readyz", lambda: http(port, "/readyz")[0] == 200, 60)
        took["daemon ready"] = time.monotonic() - start
        if http(port, "/healthz")[0] != 200:
            raise Failed("/healthz does not answer 200")
        generated = net_d / "00-multihome.conf"
        conf = json.loads(generated.read_text())
        if conf["type"] != "multihome-shim" or conf["clusterNetwork"] != (
            "/etc/cni/net.d/10-cluster.conflist"
        ):
            raise Failed(f"unexpected {generated}: {conf}")
        step("daemon ready; 00-multihome.conf points at the cluster network")

        # 3. A pod sandbox, attached through the installed shim.
        sandbox = lab.netns("pod")
        cni_env = {
            "CNI_CONTAINERID": f"{lab.prefix}c000001",
            "CNI_NETNS": sandbox.path,
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": f"K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID={uid}",
        }
        start = time.monotonic()
        result = shim(host, "ADD", cni_env, generated.read_bytes())
        took["ADD through the shim"] = time.monotonic() - start
        links = lab.links(sandbox)
        if not {"eth0", "net1"} <= set(links):
            raise Failed(f"the sandbox has {sorted(links)}, not eth0 and net1")
        # The runtime gets the cluster network's result; net1 is in the namespace.
        ips = [ip["address"] for ip in result.get("ips", [])]
        net1 = links["net1"]
        if (
            not any(a.startswith("10.250.7.") for a in ips)
            or net1.kind != "macvlan"
            or not any(a.startswith("172.31.77.") for a in net1.addresses)
        ):
            raise Failed(f"ADD result {ips}, net1 {net1}")
        status_file = manifests / "status" / "default.web.json"
        status = json.loads(status_file.read_text())
        if [s["interface"] for s in status] != ["eth0", "net1"]:
            raise Failed(f"network-status is {status}")
        step(f"ADD: eth0 {', '.join(ips)} and net1 (macvlan) {', '.join(net1.addresses)}")

        code, text = http(port, "/metrics")
        wanted = 'multihome_cni_requests_total{command="ADD",outcome="success"} 1.0'
        if code != 200 or wanted not in text:
            raise Failed(f"/metrics ({code}) lacks {wanted}")
        step("metrics: the ADD is counted")

        shim(host, "DEL", cni_env, generated.read_bytes())
        if set(lab.links(sandbox)) != {"lo"}:
            raise Failed(f"after DEL the sandbox still has {sorted(lab.links(sandbox))}")
        leases = [
            p.name
            for p in (host / "var/lib/cni/networks").rglob("*")
            if p.is_file() and not p.name.startswith(("last_reserved_ip", "lock"))
        ]
        cache = list((host / "var/lib/cni/multus/multihome").glob("*.json"))
        if leases or cache:
            raise Failed(f"after DEL: leases {leases}, cache {cache}")
        step("DEL: the sandbox has only lo; no lease, no cache record left")

        # 4. A device network: the kubelet (fake, on the host's socket) gave the pod a VF.
        vf_sandbox = lab.netns("podvf")
        vf_env = {
            **cni_env,
            "CNI_CONTAINERID": f"{lab.prefix}c000003",
            "CNI_NETNS": vf_sandbox.path,
            "CNI_ARGS": f"K8S_POD_NAMESPACE=default;K8S_POD_NAME=vf;K8S_POD_UID={vf_uid}",
        }
        kubelet_pod = {"name": "vf", "namespace": "default", "containers": [
            {"name": "app", "devices": [{"resourceName": VF_RESOURCE, "deviceIds": [VF]}]}]}  # fmt: skip
        with FakeKubelet(str(host / KUBELET_SOCKET.lstrip("/")), pods=[kubelet_pod]) as kubelet:
            shim(host, "ADD", vf_env, generated.read_bytes())
            recorded = json.loads((host / "var/lib/cni/vf-add.json").read_text())
            if recorded.get("deviceID") != VF or "net1" not in lab.links(vf_sandbox):
                raise Failed(f"device ADD: plugin got {recorded}, sandbox {lab.links(vf_sandbox)}")
            shim(host, "DEL", vf_env, generated.read_bytes())
        (host / "var/lib/cni/vf-add.json").unlink()
        if set(lab.links(vf_sandbox)) != {"lo"} or kubelet.calls != ["Get"]:
            raise Failed(f"device DEL: sandbox {lab.links(vf_sandbox)}, kubelet {kubelet.calls}")
        step(f"device network: the kubelet's {VF} reached the plugin as deviceID (PodResources Get)")

        # 5. SIGTERM, as the kubelet stops the pod, with an ADD in flight: the
        # ADD finishes (the drain), then the daemon exits within the grace period.
        grace = int(pod["terminationGracePeriodSeconds"])
        second = lab.netns("pod2")
        slow_env = {
            **cni_env,
            "CNI_CONTAINERID": f"{lab.prefix}c000002",
            "CNI_NETNS": second.path,
            "CNI_ARGS": f"K8S_POD_NAMESPACE=default;K8S_POD_NAME=db;K8S_POD_UID={slow_uid}",
        }
        outcome: dict[str, Any] = {}

        def slow_add() -> None:
            try:
                outcome["result"] = shim(host, "ADD", slow_env, generated.read_bytes())
            except Failed as err:
                outcome["error"] = err

        adding = threading.Thread(target=slow_add)
        adding.start()
        wait_for(
            "the slow ADD in flight",
            lambda: "multihome_requests_in_flight 1.0" in http(port, "/metrics")[1],
            30,
        )
        start = time.monotonic()
        run(*podman, "kill", "--signal", "TERM", name, stdout=subprocess.DEVNULL)
        status_code = wait_for(
            "the daemon to exit",
            lambda: run(
                *podman, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name,
                capture_output=True,
            ).stdout.split() if "exited" in run(
                *podman, "inspect", "--format", "{{.State.Status}}", name, capture_output=True
            ).stdout else None,
            grace,
        )  # fmt: skip
        stopped = time.monotonic() - start
        adding.join()
        took["SIGTERM to exit, one ADD in flight"] = stopped
        if "error" in outcome:
            raise Failed(f"the ADD in flight at SIGTERM failed: {outcome['error']}")
        if "net1" not in lab.links(second) or status_code[1] != "0":
            raise Failed(f"after SIGTERM: exit {status_code}, sandbox {sorted(lab.links(second))}")
        step(
            f"SIGTERM with an ADD in flight: the ADD completed, the daemon exited 0 after "
            f"{stopped:.1f} s (grace period {grace} s)"
        )
    except Exception:
        logs = run(*podman, "logs", name, env=env, capture_output=True, check=False)
        sys.stderr.write(logs.stdout[-4000:] + logs.stderr[-4000:])
        raise
    finally:
        run(*podman, "rm", "-f", "-t", "0", name, env=env, check=False, capture_output=True)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(prog="e2e-image", description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the work directory and image")
    parser.add_argument("--reuse", metavar="DIR", help="a kept work directory: skip the build")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("e2e-image: run as root (podman, namespaces, mounts)", file=sys.stderr)
        return 2
    for tool in ("mmdebstrap", "podman", "runc", "unshare"):
        if shutil.which(tool) is None:
            print(f"e2e-image: {tool} is missing (bash scripts/e2e-image-setup)", file=sys.stderr)
            return 2
    total = time.monotonic()
    if args.reuse:
        work = Path(args.reuse)
        shutil.rmtree(work / "host", ignore_errors=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="multihome-e2e-image-", dir="/var/tmp"))
    podman, env = podman_command(work)
    os.environ.update(env)
    podman_run = podman
    took: dict[str, float] = {}
    try:
        if not args.reuse:
            step(f"building the image in {work}")
            took = build_image(work, podman_run)
        size = image_size(podman_run)
        step(f"image {TAG}: {size / 2**20:.1f} MiB")
        with Lab() as lab, host_dirs():
            took |= scenario(work, podman_run, env, lab)
    except (Failed, subprocess.CalledProcessError) as err:
        print(f"e2e-image: FAILED: {err}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            run(*podman, "rm", "-af", "-t", "0", check=False, capture_output=True)
            run(*podman, "rmi", "-af", check=False, capture_output=True)
            # podman's own mounts of its storage go before its files.
            run(*podman, "system", "prune", "-af", check=False, capture_output=True)
            run("umount", "-R", str(work / "storage" / "overlay"), check=False, capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
    for what, seconds in took.items():
        step(f"{what}: {seconds:.1f} s")
    step(f"passed in {time.monotonic() - total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
