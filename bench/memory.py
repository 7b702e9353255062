"""5. Memory: the daemon's resident memory idle, with a node's worth of cache, and over many cycles.

* idle: a daemon without a cluster source, just ready;
* loaded: a daemon in Kubernetes mode whose watch cache holds 110 pods bound
  to this node (the kubelet's default pod limit) and 1,000 NADs (API double),
  before any request;
* cycles: that daemon after N ADD/DEL cycles of those pods (10,000; 1,000
  with ``--quick``), sampled after the 1st, the 10th and every 5% of the
  cycles.  Target: RSS after the cycles within 5% of RSS before them.  The
  growth after the first 10% of the cycles is reported too: a leak shows as
  a slope there, a one-time warm-up does not (measured: the file I/O
  threads' stacks and malloc arenas, per-network histograms, pymalloc's
  pools and free lists, the pods' network-status in the watch cache; what
  each is bounded by: docs/limits.md, "Daemon memory").

The delegates are `bench-noop`, a two-line shell script that answers ADD
with a fixed result: exec'ing the real plugins 20,000 times would take most
of an hour, and what grows or not here is the daemon, which still execs a
process per delegate, writes its cache, PATCHes the API and queues events
exactly as with real plugins.  The cycles go through the shim, 8 at a time,
in order over the pods (8 in flight never share one of the 110), within a
time budget (noted when it cuts the run short).  The daemon's client limits
are lifted (``kube.qps``/``burst`` 1000): at 10 requests/s (the old default) the
cycles would take an hour; events keep their default pacing, so their queue
fills up to its bound on the way.

Design target (design.md): at most 50 MiB with 110 pods and 1,000 NADs;
issue 17: at most the Go multus-daemon's 31 MiB.  What each import costs
is measured too, in a fresh interpreter, each step on top of the ones before
(the order the daemon's imports pile up): where a leaner daemon would start.
"""

from __future__ import annotations

import concurrent.futures
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from typing import Any

import yaml

from multihome.testing.apiserver import ApiServerDouble, run_in_thread
from multihome.testing.lab import CNI_BIN_DIR, lab
from multihome.testing.world import Sandbox

from . import node
from .context import Settings
from .kube import NODE
from .report import Panel, Row, Section

NAME = "memory"
PODS = 110
NADS = 1000
TARGET_MIB = 50.0
#: The Go multus-daemon v4.0.2's RSS after issue 17's interleaved run (its text).
GO_MIB = 31.3
TARGET_GROWTH = 0.05
WORKERS = 8
#: The cycles stop at the next sample after this many seconds (a loaded machine; noted).
BUDGET = 270.0
SAMPLES = 20

NOOP = """#!/bin/sh
# bench-noop: a CNI plugin that does nothing, quickly (multihome's memory benchmark).
case "$CNI_COMMAND" in
ADD) printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","mac":"02:00:00:00:00:01",\
"sandbox":"%s"}],"ips":[{"address":"192.0.2.2/24","interface":0}]}' "$CNI_IFNAME" "$CNI_NETNS" ;;
VERSION) printf '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}' ;;
esac
"""


def _nad(index: int) -> dict[str, Any]:
    """A NAD the size of a typical macvlan + host-local one."""
    name = f"nad-{index:04d}"
    config = {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "bench-noop",
        "master": "eth1",
        "mode": "bridge",
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": f"10.{index // 250}.{index % 250}.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"config": json.dumps(config)},
    }


def _pod(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"mem-{index}",
            "namespace": "default",
            "labels": {"app": "bench", "pod-template-hash": "5d9c7b8f6"},
            "annotations": {"k8s.v1.cni.cncf.io/networks": f"nad-{index * 9 % NADS:04d}"},
        },
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "busybox"}]},
    }


def _mib(kib: int) -> float:
    return kib / 1024


def run(settings: Settings) -> Section:
    section = Section(NAME, "Memory: daemon resident set", settings.command(NAME))
    planned = settings.pick(10_000, 1_000)
    with lab() as the_lab:
        root = the_lab.tmpdir()
        bin_dir, conf_dir = root / "bin", root / "net.d"
        bin_dir.mkdir()
        conf_dir.mkdir()
        (bin_dir / "bench-noop").write_text(NOOP)
        (bin_dir / "bench-noop").chmod(0o755)
        cluster = conf_dir / "10-cluster.conflist"
        noop = {"cniVersion": "1.0.0", "name": "cluster", "plugins": [{"type": "bench-noop"}]}
        cluster.write_text(json.dumps(noop))
        netns = the_lab.netns("mem")
        lan = the_lab.macvlan_parent("lan")
        config = {
            "cniVersion": "1.0.0",
            "name": "multihome-cni-network",
            "type": "multihome-shim",
            "clusterNetwork": str(cluster),
            "confDir": str(conf_dir),
            "cniDir": str(root / "cni"),
            "binDir": str(bin_dir),
        }

        with node.daemon(section=section) as idle_daemon:
            idle = node.rss_kib(node.pid_of(idle_daemon))

        with run_in_thread() as api:
            _fill(api, lan=lan)
            kubeconfig = api.write_kubeconfig(root / "kubeconfig")
            # In a pod the daemon reads its service account, no YAML: the same
            # kubeconfig as JSON (a subset of YAML) lets credentials that read
            # JSON without a YAML parser keep yaml out of the measured daemon.
            kubeconfig.write_text(json.dumps(yaml.safe_load(kubeconfig.read_text())))
            daemon_config = {
                "kubeconfig": str(kubeconfig),
                "nodeName": NODE,
                "kube": {"qps": 1000, "burst": 1000},
            }
            with node.daemon(daemon_config, section=section) as daemon:
                pid = node.pid_of(daemon)
                node.wait_for_cache(daemon, pods=PODS + 1, nads=NADS + 1)
                loaded = node.rss_kib(pid)
                runtime = node.ExecRuntime(
                    "shim",
                    [str(node.shim_binary())],
                    env=_env,
                    config={**config, "daemonSocketDir": daemon.socket_dir},
                )
                # One real ADD whose address the engine checks in the pod's
                # namespace: it loads what a working node has loaded.
                static = Sandbox("mem-static", "default", netns, f"{the_lab.prefix}mstatic", "")
                runtime.call("ADD", static)
                runtime.call("DEL", static)
                first_add = node.rss_kib(pid)
                sandboxes = [
                    Sandbox(f"mem-{i}", "default", netns, f"{the_lab.prefix}m{i:04d}", "")
                    for i in range(PODS)
                ]
                series, seconds = _cycle(runtime, sandboxes, planned, pid)
                threads = _threads(pid)
                leftovers = len(list((root / "cni" / "multihome").glob("*.json")))

    rss = {n: sample["VmRSS"] for n, sample in series}
    cycles = series[-1][0]
    if cycles < planned:
        section.notes.append(
            f"stopped after {cycles} of {planned} cycles: the {BUDGET:g} s budget was spent"
        )
    warm_mark = min(n for n in rss if n >= cycles // 10)
    before = first_add["VmRSS"]
    after = rss[cycles]
    growth = after / before - 1
    warmed = after / rss[warm_mark] - 1
    half_mark = min(n for n in rss if n >= cycles // 2)
    second_half = after / rss[half_mark] - 1
    peak = max([loaded["VmRSS"], before, *rss.values()])
    section.rows += [
        Row("idle, no cluster source", _text(idle)),
        Row(
            f"{PODS} pods + {NADS} NADs cached, before any request",
            _text(loaded),
            f"<= {GO_MIB:g} MiB (Go)",
            _mib(loaded["VmRSS"]) <= GO_MIB,
        ),
        Row("after a first ADD+DEL with a static IP (the namespace checked)", _text(first_add)),
        Row("after the first no-op ADD/DEL cycle", f"{_mib(rss[1]):.1f} MiB"),
        Row(
            f"after {cycles} ADD/DEL cycles",
            f"{_mib(after):.1f} MiB",
            f"<= {GO_MIB:g} MiB (Go)",
            _mib(after) <= GO_MIB,
        ),
        Row(
            "peak RSS with the cache loaded",
            f"{_mib(peak):.1f} MiB",
            f"<= {TARGET_MIB:g} MiB",
            _mib(peak) <= TARGET_MIB,
        ),
        Row(
            f"growth over {cycles} cycles",
            f"{growth * 100:+.1f}%",
            f"< {TARGET_GROWTH * 100:g}%",
            growth < TARGET_GROWTH,
        ),
        Row(
            f"growth over the last {cycles - warm_mark} cycles (warm-up excluded)",
            f"{warmed * 100:+.1f}%",
        ),
        Row(f"growth over the last {cycles - half_mark} cycles", f"{second_half * 100:+.1f}%"),
        Row(f"cycles/s (no-op delegates, {WORKERS} in flight)", f"{cycles / seconds:.0f}"),
        Row("cache records left after the cycles", str(leftovers), "0", leftovers == 0),
        Row("daemon threads after the cycles (4 for file I/O)", str(threads)),
    ]
    section.data = {
        "cycles": cycles,
        "cycles_planned": planned,
        "pods": PODS,
        "nads": NADS,
        "workers": WORKERS,
        "idle_kib": idle,
        "loaded_kib": loaded,
        "after_first_add_kib": first_add,
        "series": [{"cycles": n, **sample} for n, sample in series],
        "peak_kib": peak,
        "growth": growth,
        "growth_after_warmup": warmed,
        "growth_second_half": second_half,
        "cycles_per_second": cycles / seconds,
        "cache_records_left": leftovers,
        "threads": threads,
    }
    section.panels.append(
        Panel(
            f"Daemon RSS over ADD/DEL cycles ({PODS} pods, {NADS} NADs cached)",
            "lines",
            "MiB",
            x=[0.0] + [float(n) for n, _ in series],
            xlabel="ADD/DEL cycles (0: after the first real ADD)",
            series={
                "RSS": [_mib(before)] + [_mib(sample["VmRSS"]) for _, sample in series],
                "anonymous": [_mib(first_add.get("RssAnon", 0))]
                + [_mib(sample.get("RssAnon", 0)) for _, sample in series],
            },
        )
    )
    costs = cache_costs()
    for what, cached, untrimmed in costs:
        section.rows.append(
            Row(f"bytes per cached {what}", f"{cached:.0f} B (untrimmed {untrimmed:.0f} B)")
        )
    section.data["cache_bytes"] = {what: [cached, whole] for what, cached, whole in costs}
    for module, kib in import_costs():
        section.rows.append(Row(f"import cost: + {module}", f"{kib / 1024:+.1f} MiB RSS"))
    return section


def _served_pod(index: int) -> dict[str, Any]:
    """`_pod` as an API server serves it: managed fields, owner, status, network-status."""
    pod = _pod(index)
    meta = pod["metadata"]
    meta.update(
        uid=f"5b1f{index:04d}-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
        resourceVersion=str(100_000 + index),
        creationTimestamp="2026-12-01T12:00:00Z",
        generateName="mem-",
        ownerReferences=[
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "mem-5d9c7b8f6",
                "uid": "0c1d2e3f-4a5b-4e5f-8a9b-5b1f1c2d0000",
                "controller": True,
            }
        ],
        managedFields=[
            {
                "manager": "kube-controller-manager",
                "operation": "Update",
                "apiVersion": "v1",
                "time": "2026-12-01T12:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
            }
        ],
    )
    status = [{"name": "cluster", "interface": "eth0", "ips": ["10.0.0.5"], "default": True}]
    meta["annotations"]["k8s.v1.cni.cncf.io/network-status"] = json.dumps(status)
    pod["status"] = {
        "phase": "Running",
        "podIPs": [{"ip": "10.0.0.5"}],
        "containerStatuses": [{"name": "app", "image": "busybox", "ready": True}],
    }
    return pod


def cache_costs(count: int = 1000) -> list[tuple[str, float, float]]:
    """(what, bytes per object in the watch cache, bytes untrimmed), measured with tracemalloc.

    Each object is decoded from its JSON as the watch delivers it, trimmed as
    the reflector trims it (`multihome.cluster.kube`) and kept under its key.
    """
    from multihome.cluster.kube import trim_nad, trim_pod
    from multihome.cluster.watching import key_of

    def held(make: Any, trim: Any) -> float:
        wire = [json.dumps(make(i)).encode() for i in range(count)]
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            cache = {}
            for data in wire:
                obj = trim(json.loads(data))
                cache[key_of(obj)] = obj
            gc.collect()
            return (tracemalloc.get_traced_memory()[0] - base) / count
        finally:
            tracemalloc.stop()

    def whole(obj: Any) -> Any:
        return obj

    return [
        (what, held(make, trim), held(make, whole))
        for what, make, trim in (
            ("pod (this bench's)", _pod, trim_pod),
            ("pod (as served: managedFields, status)", _served_pod, trim_pod),
            ("NAD (this bench's)", _nad, trim_nad),
        )
    ]


#: The daemon's import stack, cheapest layers first; each is measured on top of the last.
IMPORTS = (
    "json",
    "logging",
    "asyncio",
    "yaml",
    "multihome.engine.engine",
    "h11",
    "multihome.cluster.kube",
    "multihome.daemon.exposition",
    "multihome.daemon.server",
)
_PROBE = """
import importlib, json, sys
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
out = [["the interpreter", rss()]]
for name in sys.argv[1:]:
    before = rss()
    importlib.import_module(name)
    out.append([name, rss() - before])
print(json.dumps(out))
"""


def import_costs() -> list[tuple[str, int]]:
    """(module, KiB of RSS its import added), in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *IMPORTS], capture_output=True, check=True, text=True
    )
    return [(str(name), int(kib)) for name, kib in json.loads(proc.stdout)]


def _threads(pid: int) -> int:
    """The daemon's threads: its loop, the child reaper, the file I/O pool (daemon/iothreads.py)."""
    return len(os.listdir(f"/proc/{pid}/task"))


def _text(sample: dict[str, int]) -> str:
    return f"{_mib(sample['VmRSS']):.1f} MiB (PSS {_mib(sample.get('Pss', 0)):.1f})"


def _env(command: str, sandbox: Sandbox) -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": sandbox.container_id,
        "CNI_NETNS": sandbox.netns.path,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": CNI_BIN_DIR,
        "CNI_ARGS": sandbox.args,
    }


def _fill(api: ApiServerDouble, *, lan: str) -> None:
    """The NADs and this node's pods, plus one pod with a static IP on a real macvlan network."""
    for index in range(NADS):
        api.create(_nad(index))
    for index in range(PODS):
        api.create(_pod(index))
    macvlan = {
        "cniVersion": "1.0.0",
        "name": "static-lan",
        "type": "macvlan",
        "master": lan,
        "mode": "bridge",
        "capabilities": {"ips": True},
        "ipam": {"type": "static"},
    }
    api.create(
        {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "static-lan", "namespace": "default"},
            "spec": {"config": json.dumps(macvlan)},
        }
    )
    pod = _pod(0)
    pod["metadata"]["name"] = "mem-static"
    selection = [{"name": "static-lan", "ips": ["198.51.100.10/24"]}]
    pod["metadata"]["annotations"] = {"k8s.v1.cni.cncf.io/networks": json.dumps(selection)}
    api.create(pod)


def _cycle(
    runtime: node.ExecRuntime, sandboxes: list[Sandbox], cycles: int, pid: int
) -> tuple[list[tuple[int, dict[str, int]]], float]:
    """Run the cycles, sampling RSS after the 1st, the 10th and every 1/`SAMPLES`th.

    Returns the samples (cycles done, RSS) and the seconds the cycles took;
    stops at a sample once `BUDGET` seconds have passed.
    """

    def one(index: int) -> None:
        sandbox = sandboxes[index % len(sandboxes)]
        runtime.call("ADD", sandbox)
        runtime.call("DEL", sandbox)

    marks = sorted({1, 10, *(cycles * k // SAMPLES for k in range(1, SAMPLES + 1))})
    series = []
    done = 0
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for upto in marks:
            list(pool.map(one, range(done, upto)))
            done = upto
            series.append((done, node.rss_kib(pid)))
            if time.perf_counter() - started > BUDGET:
                break
    return series, time.perf_counter() - started
