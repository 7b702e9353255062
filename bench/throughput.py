"""4. Throughput: 200 pods ADDed, then DELeted, with 1, 8 and 32 requests in flight.

Through the shim and the daemon in Kubernetes mode (the API double, pods
bound to this node and in the daemon's watch cache), as on a cluster node.
Each pod has the cluster network (bridge + host-local) and one macvlan
network with host-local IPAM.  For every concurrency level: pods/s of each
phase, p50/p99 latency of each call, failures (must be 0) and what leaked
once all DELs are done (links in the pods' namespaces, bridge ports,
host-local leases, cache records: must be 0).

The daemon's client limits are lifted here (``kube.qps``/``burst`` 1000):
at the default 10 requests/s a node churns about 3 pods/s (see ``kube``),
and this measurement is about multihome and the plugins, not the API budget.

Also measured, because it decides whether manifest mode scales: one pod's
ADD+DEL with the same 200 pod manifests in ``manifestDir``.

Without a daemon the thin plugin is measured instead, with fewer pods (it
starts Python for every call and reads the API without a cache).
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from typing import Any

from multihome.testing.apiserver import run_in_thread
from multihome.testing.lab import lab
from multihome.testing.world import Sandbox, World

from . import node
from .context import Settings
from .kube import NODE, _manifest, _publish
from .overhead import add_del
from .report import Panel, Row, Section
from .stats import Summary

NAME = "throughput"
LEVELS = (1, 8, 32)


def _phase(
    runtime: node.Runtime, command: str, pods: list[Sandbox], concurrency: int
) -> dict[str, Any]:
    """Run ``command`` for every pod, ``concurrency`` at once: wall time, latencies, failures."""

    def one(sandbox: Sandbox) -> float:
        started = time.perf_counter()
        runtime.call(command, sandbox)
        return time.perf_counter() - started

    latencies: list[float] = []
    failures: list[str] = []
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in concurrent.futures.as_completed([pool.submit(one, p) for p in pods]):
            try:
                latencies.append(future.result())
            except Exception as err:
                failures.append(str(err)[:300])
    wall = time.perf_counter() - started
    return {
        "seconds": wall,
        "pods_per_second": len(pods) / wall,
        "latency_ms": Summary.of(latencies).to_dict(1e3) if latencies else None,
        "failures": len(failures),
        "failure_samples": failures[:3],
    }


def run(settings: Settings) -> Section:
    section = Section(
        NAME, "Throughput: pods ADDed then DELeted, N in flight", settings.command(NAME)
    )
    with lab() as the_lab, run_in_thread() as api:
        world = World(the_lab)
        world.macvlan_nad("lan1", master=the_lab.macvlan_parent("lan"), subnet=world.lan_subnet(1))
        api.create(json.loads((world.manifests / "nad-default-lan1.json").read_text()))
        kubeconfig = api.write_kubeconfig(world.root / "kubeconfig")
        daemon_config = {
            "kubeconfig": str(kubeconfig),
            "nodeName": NODE,
            "kube": {"qps": 1000, "burst": 1000},
        }
        with node.maybe_daemon(section, daemon_config) as daemon:
            runtime: node.ExecRuntime
            if daemon is not None:
                count = settings.pick(200, 40)
                runtime = node.shim_runtime(world, socket_dir=daemon.socket_dir)
                runtime.config.pop("manifestDir", None)
            else:
                count = settings.pick(40, 10)
                runtime = node.thin_runtime(world, kubeconfig=str(kubeconfig))
                runtime.config.pop("manifestDir", None)
            pods = []
            for index in range(count):
                pod = world.pod(f"tp-{index}", "lan1")
                _publish(api, _manifest(world, pod), pod)
                pods.append(pod)
            if daemon is not None:  # every pod is in the watch cache before the first ADD
                node.wait_for_cache(daemon, pods=count, nads=1)
            levels: dict[str, Any] = {}
            for level in LEVELS:
                adds = _phase(runtime, "ADD", pods, level)
                dels = _phase(runtime, "DEL", pods, level)
                levels[str(level)] = {"add": adds, "del": dels, "leaks": node.leaks(world, pods)}
            manifest_mode = None
            if daemon is not None:
                manifest_mode = _manifest_mode(world, daemon.socket_dir, settings.pick(5, 3))

    section.data = {
        "pods": count,
        "path": "shim -> daemon (kube)" if daemon else "thin",
        "levels": levels,
    }
    for key, result in levels.items():
        for phase in ("add", "del"):
            r = result[phase]
            lat = r["latency_ms"] or {}
            section.rows.append(
                Row(
                    f"{count} pods, {key:>2} in flight: {phase.upper()}",
                    f"{r['pods_per_second']:.1f} pods/s; p50 {lat.get('median', 0):.0f} ms, "
                    f"p99 {lat.get('p99', 0):.0f} ms",
                )
            )
        failures = result["add"]["failures"] + result["del"]["failures"]
        section.rows.append(
            Row(f"{count} pods, {key:>2} in flight: failures", str(failures), "0", failures == 0)
        )
        found = result["leaks"]
        section.rows.append(
            Row(
                f"{count} pods, {key:>2} in flight: leaks",
                node.leak_text(found),
                "0",
                not any(found.values()),
            )
        )
    if manifest_mode is not None:
        section.data["manifest_mode"] = manifest_mode
        section.rows.append(
            Row(
                f"manifest mode, {count} pods in manifestDir: ADD",
                Summary.of(manifest_mode["add"]).ms(),
            )
        )
        section.rows.append(
            Row(
                f"manifest mode, {count} pods in manifestDir: DEL",
                Summary.of(manifest_mode["del"]).ms(),
            )
        )
    section.panels.append(
        Panel(
            f"Throughput, {count} pods",
            "lines",
            "pods/s",
            x=[float(level) for level in LEVELS],
            xlabel="requests in flight",
            series={
                phase.upper(): [levels[str(level)][phase]["pods_per_second"] for level in LEVELS]
                for phase in ("add", "del")
            },
        )
    )
    return section


def _manifest_mode(world: World, socket_dir: str, cycles: int) -> dict[str, list[float]]:
    """ADD+DEL of one pod through the daemon, pods and NADs read from the manifest directory."""
    runtime = node.shim_runtime(world, socket_dir=socket_dir)
    pod = world.pod("manifest-mode", "lan1")
    out: dict[str, list[float]] = {"add": [], "del": []}
    for _ in range(cycles):
        timings = add_del(runtime, pod)
        out["add"].append(timings["add"])
        out["del"].append(timings["del"])
    return out
