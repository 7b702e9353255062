"""A small node for tests, the demo and benchmarks: a lab plus everything around multihome.

A `World` owns a `Lab` and sets up what a node has: a CNI configuration
directory with a cluster network (bridge + host-local), a LAN bridge for
macvlan networks, a manifest directory with Pods and NADs, an IPAM store and
an attachment cache, all under the lab's scratch directory and named with
its prefix.  It then plays the container runtime: `add`, `delete`, `check`
and `gc` call multihome the way a runtime would, through one of the real
entry points (`Mode`): the engine in this process, the thin plugin
``multihome-cni`` as a child process, or the static shim and the daemon.

Subnets are derived from the lab's prefix, so two worlds on one machine
(parallel tests) do not share addresses on root-namespace bridges.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from multihome.cni.errors import CNIError
from multihome.cni.request import Request
from multihome.cni.result import Result

from . import leaks
from .daemon import shim_binary
from .lab import CNI_BIN_DIR, Lab, Netns

Mode = Literal["engine", "thin", "shim"]
# Pod numbers are unique in the process, so several worlds can share a lab.
_POD_NUMBERS = itertools.count(1)


@dataclass
class Sandbox:
    """A pod sandbox: its namespace and the runtime's container ID."""

    pod: str
    namespace: str
    netns: Netns
    container_id: str
    uid: str

    @property
    def args(self) -> str:
        return (
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE={self.namespace};K8S_POD_NAME={self.pod};"
            f"K8S_POD_INFRA_CONTAINER_ID={self.container_id};K8S_POD_UID={self.uid}"
        )


class World:
    def __init__(
        self,
        lab: Lab,
        *,
        mode: Mode = "engine",
        parallel: bool = True,
        cni_version: str = "1.0.0",
        shim: str = "",
        socket_dir: str = "",
    ) -> None:
        self.lab = lab
        self.mode = mode
        self.root = lab.tmpdir()
        self.manifests = self.root / "manifests"
        self.conf_dir = self.root / "net.d"
        self.cni_dir = self.root / "cni"
        self.ipam_dir = self.root / "ipam"
        for path in (self.manifests, self.conf_dir, self.cni_dir, self.ipam_dir):
            path.mkdir()
        digest = hashlib.sha256(lab.prefix.encode()).digest()
        #: 10.<a>.<b>.0/24 for the cluster network; 192.168.<c>.0/24 style LANs via `lan_subnet`.
        self.octets = (100 + digest[0] % 100, digest[1], digest[2] % 200)
        self.cluster_bridge = lab.name("cni")
        self.cluster_subnet = f"10.{self.octets[0]}.{self.octets[1]}.0/24"
        self.cluster_subnet6 = f"fd{digest[3]:02x}:{digest[4]:02x}{digest[5]:02x}::/64"
        self.cni_version = cni_version
        # In shim mode the defaults come from the test's daemon (testing.daemon).
        self.shim = shim or (str(shim_binary()) if mode == "shim" else "")
        self.socket_dir = socket_dir or (
            os.environ.get("MULTIHOME_SOCKET_DIR", "") if mode == "shim" else ""
        )
        self.cluster_conf = self.conf_dir / "10-cluster.conflist"
        self.cluster_conf.write_text(json.dumps(self._cluster_network(), indent=1))
        self.config: dict[str, Any] = {
            "cniVersion": cni_version,
            "name": "multihome-cni-network",
            "type": "multihome-shim" if mode == "shim" else "multihome-cni",
            "clusterNetwork": str(self.cluster_conf),
            "confDir": str(self.conf_dir),
            "cniDir": str(self.cni_dir),
            "binDir": CNI_BIN_DIR,
            "manifestDir": str(self.manifests),
            "parallelDelegates": parallel,
        }
        if self.socket_dir:
            self.config["daemonSocketDir"] = self.socket_dir

    # -- the node's networks ------------------------------------------------------------
    def _cluster_network(self) -> dict[str, Any]:
        a, b, _ = self.octets
        return {
            "cniVersion": self.cni_version,
            "name": "cluster",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.cluster_bridge,
                    "isGateway": True,
                    "isDefaultGateway": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.ipam_dir),
                        "ranges": [
                            [{"subnet": self.cluster_subnet, "gateway": f"10.{a}.{b}.1"}],
                            [{"subnet": self.cluster_subnet6}],
                        ],
                    },
                }
            ],
        }

    def lan_subnet(self, index: int) -> str:
        """A /24 for LAN number ``index`` (macvlan networks), unique to this world."""
        return f"172.{16 + (self.octets[2] + index) % 16}.{self.octets[1]}.0/24"

    def host(self, subnet: str, last_octet: int) -> str:
        return subnet.rsplit(".", 1)[0] + f".{last_octet}"

    # -- manifests ----------------------------------------------------------------------
    def nad(
        self,
        name: str,
        config: dict[str, Any] | str,
        *,
        namespace: str = "default",
        annotations: dict[str, str] | None = None,
    ) -> None:
        text = config if isinstance(config, str) else json.dumps(config)
        doc = {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
            "spec": {"config": text},
        }
        (self.manifests / f"nad-{namespace}-{name}.json").write_text(json.dumps(doc, indent=1))

    def delete_nad(self, name: str, namespace: str = "default") -> None:
        (self.manifests / f"nad-{namespace}-{name}.json").unlink()

    def macvlan_nad(
        self,
        name: str,
        *,
        master: str,
        subnet: str | None = None,
        static: bool = False,
        tuning: bool = False,
        routes: list[dict[str, str]] | None = None,
    ) -> None:
        """A macvlan network: host-local in ``subnet``, or static IPAM; tuning for MACs."""
        ipam: dict[str, Any]
        if static:
            ipam = {"type": "static", "routes": routes or []}
        else:
            assert subnet, "a host-local macvlan network needs a subnet"
            ipam = {
                "type": "host-local",
                "dataDir": str(self.ipam_dir),
                "ranges": [[{"subnet": subnet}]],
                "routes": routes or [],
            }
        macvlan: dict[str, Any] = {
            "type": "macvlan",
            "master": master,
            "mode": "bridge",
            "ipam": ipam,
        }
        if static:
            macvlan["capabilities"] = {"ips": True}
        plugins = [macvlan]
        if tuning:
            plugins.append({"type": "tuning", "capabilities": {"mac": True, "ips": True}})
        self.nad(name, {"cniVersion": self.cni_version, "name": name, "plugins": plugins})

    def pod(
        self,
        name: str,
        networks: str | list[dict[str, Any]] | None = None,
        *,
        namespace: str = "default",
    ) -> Sandbox:
        """Write the Pod manifest and make its sandbox namespace."""
        number = next(_POD_NUMBERS)
        annotations = {}
        if networks is not None:
            annotations["k8s.v1.cni.cncf.io/networks"] = (
                networks if isinstance(networks, str) else json.dumps(networks)
            )
        uid = str(uuid.uuid4())
        doc = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid,
                "annotations": annotations,
            },
            "spec": {"containers": [{"name": "app", "image": "busybox"}]},
        }
        (self.manifests / f"pod-{namespace}-{name}.json").write_text(json.dumps(doc, indent=1))
        netns = self.lab.netns(f"pod{number}")
        return Sandbox(name, namespace, netns, f"{self.lab.prefix}c{number:06d}", uid)

    def delete_pod(self, sandbox: Sandbox) -> None:
        (self.manifests / f"pod-{sandbox.namespace}-{sandbox.pod}.json").unlink()

    def network_status(self, sandbox: Sandbox) -> list[dict[str, Any]] | None:
        path = self.manifests / "status" / f"{sandbox.namespace}.{sandbox.pod}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def events(self) -> list[dict[str, Any]]:
        path = self.manifests / "events.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    # -- IPAM and cache -----------------------------------------------------------------
    def allocations(self) -> dict[str, set[str]]:
        """host-local's leases: network name -> allocated addresses (files named by IP)."""
        out: dict[str, set[str]] = {}
        for network in sorted(p for p in self.ipam_dir.iterdir() if p.is_dir()):
            leases = {
                f.name
                for f in network.iterdir()
                if not f.name.startswith(("last_reserved_ip", "lock"))
            }
            if leases:
                out[network.name] = leases
        return out

    def cached_containers(self) -> list[str]:
        path = self.cni_dir / "multihome"
        # Dot files are the cache's own (the thin plugin's VERSION answers), not records.
        return sorted(p.stem for p in path.glob("[!.]*.json")) if path.exists() else []

    def leftovers(self, sandbox: Sandbox, before: leaks.Baseline) -> leaks.Leftovers:
        """What the node still holds for ``sandbox`` (`multihome.testing.leaks`).

        The cluster bridge is the node's, made by the first ADD: not counted.
        """
        found = leaks.account(
            sandbox.container_id,
            lab=self.lab,
            netns=sandbox.netns,
            before=before,
            ipam_dirs=[self.ipam_dir],
            cache_dirs=[self.cni_dir],
        )
        root = {k: v for k, v in found.root_links.items() if k != self.cluster_bridge}
        return dataclasses.replace(found, root_links=root)

    # -- playing the runtime ------------------------------------------------------------
    def env(self, command: str, sandbox: Sandbox | None, ifname: str = "eth0") -> dict[str, str]:
        env = {"CNI_COMMAND": command, "CNI_PATH": CNI_BIN_DIR}
        if sandbox is not None:
            env.update(
                CNI_CONTAINERID=sandbox.container_id,
                CNI_NETNS=sandbox.netns.path,
                CNI_IFNAME=ifname,
                CNI_ARGS=sandbox.args,
            )
        return env

    def call(
        self, command: str, sandbox: Sandbox | None, *, config: dict[str, Any] | None = None
    ) -> str:
        """Run one CNI command; its stdout, or `CNIError` as the runtime would see it."""
        env = self.env(command, sandbox)
        stdin = json.dumps(config or self.config).encode()
        if self.mode == "engine":
            from multihome.engine.engine import Engine

            return asyncio.run(Engine().handle(Request.from_env(env, stdin)))
        argv = [sys.executable, "-m", "multihome.thin"] if self.mode == "thin" else [self.shim]
        proc = subprocess.run(
            argv,
            input=stdin,
            env={**env, "PATH": os.environ.get("PATH", "")},
            capture_output=True,
            check=False,
        )
        out = proc.stdout.decode()
        if proc.returncode != 0:
            try:
                raise CNIError.from_dict(json.loads(out))
            except ValueError:
                raise CNIError(
                    999, f"exit {proc.returncode}: {out} {proc.stderr.decode()}"
                ) from None
        return out

    def spawn(
        self, command: str, sandbox: Sandbox | None, *, config: dict[str, Any] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start one CNI command (thin or shim mode) without waiting; see `answer`."""
        assert self.mode != "engine", "spawn runs the thin plugin or the shim as a process"
        argv = [sys.executable, "-m", "multihome.thin"] if self.mode == "thin" else [self.shim]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**self.env(command, sandbox), "PATH": os.environ.get("PATH", "")},
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(config or self.config).encode())
        proc.stdin.close()
        proc.stdin = None  # communicate() must not flush it again
        return proc

    @staticmethod
    def answer(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> tuple[int, Any]:
        """A spawned command's exit code and its printed JSON (None when it printed nothing)."""
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, json.loads(out) if out.strip() else None

    def add(self, sandbox: Sandbox) -> Result:
        return Result.parse(self.call("ADD", sandbox))

    def delete(self, sandbox: Sandbox) -> None:
        self.call("DEL", sandbox)

    def check(self, sandbox: Sandbox) -> None:
        self.call("CHECK", sandbox)

    def gc(self, valid: list[Sandbox]) -> None:
        config = {
            **self.config,
            "cniVersion": "1.1.0",
            "cni.dev/valid-attachments": [
                {"containerID": s.container_id, "ifname": "eth0"} for s in valid
            ],
        }
        self.call("GC", None, config=config)

    def state(self, sandbox: Sandbox) -> dict[str, Any]:
        """The namespace as a comparable snapshot: links (name, kind, addresses) and routes."""
        links = self.lab.links(sandbox.netns)
        return {
            "links": {
                name: (link.kind, sorted(link.addresses))
                for name, link in links.items()
                if name != "lo"
            },
            "routes4": sorted(
                (r.get("dst", ""), r.get("gateway", ""), r.get("dev", ""))
                for r in self.lab.routes(sandbox.netns, 4)
            ),
        }


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1))
