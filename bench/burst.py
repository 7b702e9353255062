"""7. A node-reboot burst: 110 pods ADDed at once, as the kubelet starts sandboxes after a reboot.

Through the shim and the daemon in Kubernetes mode (the API double with
+2 ms per request, every pod bound to this node and in the daemon's watch
cache), with the daemon's default client limits (``kube.qps``/``burst``):
whether those limits are what holds a node back is part of the question.
Each pod has the cluster network (bridge + host-local) and one macvlan
network with host-local IPAM.

The baseline runs the same delegates (each pod's configs from its cache
record, `bench.direct`) with the same concurrency, so the ratio of the two
"last pod attached" times is multihome's cost under a burst.  The thin
plugin (``multihome-cni``, a kubeconfig in JSON, no cache: each call its own
interpreter and its own client) runs the same burst too: what a node in
thin mode goes through after a reboot.  Rounds rotate which side goes
first.  Reported: time until the last pod is attached, p50/p99 per pod,
failures (must be 0), API requests during the burst, and the peak resident
memory of the daemon together with the plugin processes it runs (what a
container memory limit counts: upstream users hit OOM kills with 50 MiB
limits here), sampled from /proc every few ms, and the daemon's own peak;
for the thin burst, of its plugin processes.

``BENCH_BURST_KUBE='{"qps": 10, "burst": 20}'`` runs the daemon with other
client limits (the daemon file's ``kube`` keys), to compare them.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from multihome.testing.apiserver import run_in_thread
from multihome.testing.lab import CNI_BIN_DIR, lab
from multihome.testing.world import Sandbox, World

from . import node
from .context import Settings
from .direct import DirectRuntime
from .kube import NODE, _manifest, _publish
from .report import Row, Section
from .stats import Summary

NAME = "burst"
PODS = 110  # the kubelet's default maxPods
LATENCY_MS = 2.0
TARGET = 1.5  # burst time / direct burst time


def _tree(pid: int) -> list[int]:
    """``pid`` and every descendant (through /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            for task in os.scandir(f"/proc/{current}/task"):
                text = Path(task.path, "children").read_text()
                todo.extend(int(c) for c in text.split())
        except OSError:
            continue
    return out


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakMemory:
    """The largest sum of RSS over a process tree, sampled in a thread while active.

    ``children_of``: the descendants of ``pid`` only, none of the processes
    in ``besides`` (this harness's own children: the daemon, for a thin burst).
    """

    def __init__(
        self, pid: int, period: float = 0.005, *, children_of: bool = False, besides: int = 0
    ) -> None:
        self.pid, self.period = pid, period
        self.children_of, self.besides = children_of, besides
        self.peak_kib = 0
        self.peak_processes = 0
        self.own_peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            pids = _tree(self.pid)
            if self.children_of:
                skip = set(_tree(self.besides)) if self.besides else set()
                pids = [self.pid, *(p for p in pids[1:] if p not in skip)]
            sizes = [_rss_kib(p) for p in pids]
            total = sum(sizes[1:]) if self.children_of else sum(sizes)
            self.own_peak_kib = max(self.own_peak_kib, sizes[0])
            if total > self.peak_kib:
                self.peak_kib, self.peak_processes = total, len(pids)
            self._stop.wait(self.period)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _burst(
    runtimes: dict[str, node.Runtime | DirectRuntime], command: str, pods: list[Sandbox]
) -> tuple[float, list[float], list[str]]:
    """Every pod's ``command`` at once: wall time until the last is done, per-pod latencies."""

    def one(sandbox: Sandbox) -> float:
        started = time.perf_counter()
        runtimes[sandbox.container_id].call(command, sandbox)
        return time.perf_counter() - started

    latencies: list[float] = []
    failures: list[str] = []
    gate = threading.Barrier(len(pods))

    def gated(sandbox: Sandbox) -> float:
        gate.wait()  # all start together, as after a reboot
        return one(sandbox)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(pods)) as pool:
        for future in concurrent.futures.as_completed([pool.submit(gated, p) for p in pods]):
            try:
                latencies.append(future.result())
            except Exception as err:
                failures.append(str(err)[:300])
    return time.perf_counter() - started, latencies, failures


def run(settings: Settings) -> Section:
    section = Section(
        NAME,
        f"Node-reboot burst: {PODS} pods ADDed at once (API +{LATENCY_MS:g} ms)",
        settings.command(NAME),
    )
    rounds = settings.pick(3, 1)
    with lab() as the_lab, run_in_thread(latency_ms=LATENCY_MS) as api:
        world = World(the_lab)
        world.macvlan_nad("lan1", master=the_lab.macvlan_parent("lan"), subnet=world.lan_subnet(1))
        api.create(json.loads((world.manifests / "nad-default-lan1.json").read_text()))
        kubeconfig = api.write_kubeconfig(world.root / "kubeconfig")
        thin_kubeconfig = world.root / "kubeconfig.json"
        thin_kubeconfig.write_text(json.dumps(yaml.safe_load(kubeconfig.read_text())))
        pods = []
        for index in range(PODS):
            pod = world.pod(f"burst-{index}", "lan1")
            _publish(api, _manifest(world, pod), pod)
            pods.append(pod)
        config: dict[str, Any] = {"kubeconfig": str(kubeconfig), "nodeName": NODE}
        if os.environ.get("BENCH_BURST_KUBE"):
            config["kube"] = json.loads(os.environ["BENCH_BURST_KUBE"])
            section.notes.append(f"daemon kube settings: {config['kube']}")
        with node.daemon(config, section=section) as d:
            shim = node.shim_runtime(world, socket_dir=d.socket_dir)
            shim.config.pop("manifestDir", None)
            node.wait_for_cache(d, pods=PODS, nads=1)
            via_shim: dict[str, node.Runtime | DirectRuntime] = {p.container_id: shim for p in pods}
            # The baseline runs what the daemon ran: the records of a first ADD.
            _burst(via_shim, "ADD", pods)
            cache_dir = world.cni_dir / "multihome"
            direct: dict[str, node.Runtime | DirectRuntime] = {
                p.container_id: DirectRuntime.from_cache(
                    cache_dir, p.container_id, cni_path=(CNI_BIN_DIR,)
                )
                for p in pods
            }
            _burst(via_shim, "DEL", pods)
            thin = node.thin_runtime(world, kubeconfig=str(thin_kubeconfig))
            thin.config.pop("manifestDir", None)
            sides: dict[str, dict[str, node.Runtime | DirectRuntime]] = {
                "shim": via_shim,
                "direct": direct,
                "thin": {p.container_id: thin for p in pods},
            }
            results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
            names = list(sides)
            for index in range(rounds):
                shift = index % len(names)
                for side in names[shift:] + names[:shift]:
                    runtimes = sides[side]
                    api.reset_requests()
                    if side == "thin":
                        sampler = PeakMemory(os.getpid(), children_of=True, besides=node.pid_of(d))
                    else:
                        sampler = PeakMemory(node.pid_of(d))
                    with sampler as sampled:
                        wall, latencies, failures = _burst(runtimes, "ADD", pods)
                    requests = api.count()
                    del_wall, _, del_failures = _burst(runtimes, "DEL", pods)
                    results[side].append(
                        {
                            "seconds": wall,
                            "latencies": latencies,
                            "failures": len(failures) + len(del_failures),
                            "failure_samples": (failures + del_failures)[:3],
                            "api_requests": requests,
                            "del_seconds": del_wall,
                            "peak_kib": sampled.peak_kib if side != "direct" else None,
                            "peak_processes": sampled.peak_processes if side != "direct" else None,
                            "daemon_peak_kib": sampled.own_peak_kib if side == "shim" else None,
                        }
                    )
        found = node.leaks(world, pods)

    shim_walls = [r["seconds"] for r in results["shim"]]
    direct_walls = [r["seconds"] for r in results["direct"]]
    thin_walls = [r["seconds"] for r in results["thin"]]
    ratios = [s / d for s, d in zip(shim_walls, direct_walls, strict=True)]
    ratio = Summary.of(ratios)
    thin_ratio = Summary.of([t / d for t, d in zip(thin_walls, direct_walls, strict=True)])
    per_pod = {k: Summary.of([x for r in v for x in r["latencies"]]) for k, v in results.items()}
    failures = sum(r["failures"] for v in results.values() for r in v)
    peak = max(r["peak_kib"] or 0 for r in results["shim"])
    own_peak = max(r["daemon_peak_kib"] or 0 for r in results["shim"])
    requests = max(r["api_requests"] for r in results["shim"])
    thin_peak = max(r["peak_kib"] or 0 for r in results["thin"])
    thin_processes = max(r["peak_processes"] or 0 for r in results["thin"])
    thin_requests = max(r["api_requests"] for r in results["thin"])
    section.rows += [
        Row(
            f"{PODS} pods at once through shim -> daemon: last attached",
            f"{Summary.of(shim_walls).median:.2f} s; per pod p50 {per_pod['shim'].median * 1e3:.0f}"
            f" ms, p99 {per_pod['shim'].p99 * 1e3:.0f} ms",
        ),
        Row(
            f"{PODS} pods at once, delegates directly: last attached",
            f"{Summary.of(direct_walls).median:.2f} s; per pod p50 "
            f"{per_pod['direct'].median * 1e3:.0f} ms, p99 {per_pod['direct'].p99 * 1e3:.0f} ms",
        ),
        Row(
            "burst: shim / direct (per round)",
            f"{ratio.median:.2f}",
            f"<= {TARGET}",
            ratio.median <= TARGET,
        ),
        Row("burst: failures", str(failures), "0", failures == 0),
        Row("burst: API requests during the ADD burst (events included)", str(requests)),
        Row(
            "burst: peak RSS of the daemon and its plugin processes",
            f"{peak / 1024:.1f} MiB (the daemon alone {own_peak / 1024:.1f} MiB)",
        ),
        Row(
            f"{PODS} pods at once, thin plugin: last attached",
            f"{Summary.of(thin_walls).median:.2f} s; per pod p50 {per_pod['thin'].median * 1e3:.0f}"
            f" ms, p99 {per_pod['thin'].p99 * 1e3:.0f} ms",
        ),
        Row("burst: thin / direct (per round)", f"{thin_ratio.median:.2f}"),
        Row("thin burst: API requests during the ADD burst", str(thin_requests)),
        Row(
            "thin burst: peak RSS of the plugin processes",
            f"{thin_peak / 1024:.1f} MiB ({thin_processes - 1} processes at the peak)",
        ),
        Row("leaks after", node.leak_text(found), "0", not any(found.values())),
    ]
    section.data = {
        "pods": PODS,
        "rounds": rounds,
        "latency_ms": LATENCY_MS,
        "ratios": ratios,
        "thin_ratios": thin_ratio.to_dict(),
        "per_pod_ms": {k: v.to_dict(1e3) for k, v in per_pod.items()},
        "rounds_data": {
            k: [{x: y for x, y in r.items() if x != "latencies"} for r in v]
            for k, v in results.items()
        },
        "leaks": found,
    }
    return section
