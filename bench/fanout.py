"""2. Fan-out: a pod with four secondary macvlan networks, delegates in parallel vs. in turn.

The pod has the cluster network and four static-IPAM macvlan networks on
one LAN parent.  ``parallelDelegates`` on vs. off, interleaved, through the
shim and daemon (when it runs) and through the engine in this process.  The
target is on the whole ADD (design.md: at most 0.5x); the in-process sides
also time the secondary delegates' phase alone (first exec to last exit,
from a timing wrapper around the plugin executor), which shows how much the
parallel part itself gains and how much of the ADD is not parallel at all
(the cluster network, which runs first, and multihome's own work).
Beside the target, the bound this machine puts on it: the sequential ADD
with its secondary phase divided among the cores (at most one per network),
everything else as it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multihome.cni.process import Exec, Outcome, default_exec
from multihome.engine.engine import Engine
from multihome.testing.lab import lab
from multihome.testing.world import World

from . import node
from .context import Settings
from .overhead import add_del, static_pod
from .report import Panel, Row, Section
from .stats import Summary, Timings, interleaved, paired, ratio_text

NAME = "fanout"
TARGET = 0.5
NETWORKS = ["lan1", "lan2", "lan3", "lan4"]


@dataclass
class TimingExec:
    """An `Exec` that records when each plugin run started and ended (perf_counter)."""

    inner: Exec = field(default_factory=default_exec)
    runs: list[tuple[str, str, float, float]] = field(default_factory=list)

    def find(self, plugin_type: str, paths: Sequence[str]) -> str:
        return self.inner.find(plugin_type, paths)

    async def run(self, path: str, *, stdin: bytes, env: Mapping[str, str]) -> Outcome:
        started = time.perf_counter()
        try:
            return await self.inner.run(path, stdin=stdin, env=env)
        finally:
            self.runs.append(
                (
                    env.get("CNI_COMMAND", ""),
                    env.get("CNI_IFNAME", ""),
                    started,
                    time.perf_counter(),
                )
            )

    def secondary_phase(self) -> float:
        """Seconds from the first to the end of the last ADD exec of a secondary network."""
        spans = [(s, e) for cmd, ifname, s, e in self.runs if cmd == "ADD" and ifname != "eth0"]
        self.runs.clear()
        return max(e for _, e in spans) - min(s for s, _ in spans)


def _engine_side(runtime: node.EngineRuntime, timing: TimingExec, sandbox: Any) -> Any:
    def side() -> Timings:
        timings = dict(add_del(runtime, sandbox))
        timings["phase"] = timing.secondary_phase()
        return timings

    return side


def run(settings: Settings) -> Section:
    section = Section(
        NAME,
        "Fan-out: four secondary macvlan networks, parallel vs. sequential",
        settings.command(NAME),
    )
    rounds = settings.pick(20, 5)
    with lab() as the_lab, node.maybe_daemon(section) as daemon:
        world = World(the_lab)
        lan = the_lab.macvlan_parent("lan")
        for net in NETWORKS:
            world.macvlan_nad(net, master=lan, static=True)
        sides: dict[str, Any] = {}
        runtimes: dict[str, node.Runtime] = {}
        sandboxes = []
        closers = []
        for host, parallel in ((10, True), (11, False)):
            tag = "parallel" if parallel else "sequential"
            if daemon is not None:
                shim = node.shim_runtime(
                    world, socket_dir=daemon.socket_dir, parallelDelegates=parallel
                )
                pod = static_pod(world, f"shim-{tag}", NETWORKS, host)
                sandboxes.append(pod)
                runtimes[f"shim {tag}"] = shim
                sides[f"shim {tag}"] = _bind(shim, pod)
            timing = TimingExec()
            engine = node.engine_runtime(
                world, engine=Engine(executor=timing), parallelDelegates=parallel
            )
            closers.append(engine.close)
            pod = static_pod(world, f"engine-{tag}", NETWORKS, host + 10)
            sandboxes.append(pod)
            runtimes[f"engine {tag}"] = engine
            sides[f"engine {tag}"] = _engine_side(engine, timing, pod)
        try:
            samples = interleaved(sides, rounds=rounds)
        finally:
            for close in closers:
                close()
        found = node.leaks(world, sandboxes)

    summaries = {s: {k: Summary.of(v) for k, v in t.items()} for s, t in samples.items()}
    ratios: dict[str, Any] = {}
    for path in ("shim", "engine"):
        if f"{path} parallel" not in summaries:
            continue
        par, seq = summaries[f"{path} parallel"], summaries[f"{path} sequential"]
        section.rows.append(Row(f"{path}: ADD, parallel", par["add"].ms()))
        section.rows.append(Row(f"{path}: ADD, sequential", seq["add"].ms()))
        for key in ("add", "phase"):
            if key in par:
                ratio = paired(samples[f"{path} parallel"][key], samples[f"{path} sequential"][key])
                ratios[f"{path}_{key}"] = ratio
        if "phase" in par:
            section.rows.append(Row(f"{path}: secondary phase, parallel", par["phase"].ms()))
            section.rows.append(Row(f"{path}: secondary phase, sequential", seq["phase"].ms()))
    main = "shim" if "shim_add" in ratios else "engine"
    value = ratios[f"{main}_add"]
    section.rows.append(
        Row(
            f"ADD parallel/sequential ({main}), per round",
            ratio_text(value),
            f"<= {TARGET}",
            value.median <= TARGET,
        )
    )
    if main == "shim":
        section.rows.append(
            Row("ADD parallel/sequential (engine in-process)", ratio_text(ratios["engine_add"]))
        )
    section.rows.append(
        Row("secondary phase parallel/sequential (engine)", ratio_text(ratios["engine_phase"]))
    )
    cores = min(len(os.sched_getaffinity(0)), len(NETWORKS))
    sequential = samples["engine sequential"]
    bound = Summary.of(
        [
            (add - phase + phase / cores) / add
            for add, phase in zip(sequential["add"], sequential["phase"], strict=True)
        ]
    )
    ratios["bound"] = bound
    section.rows.append(
        Row(
            f"bound: the secondary phase on {cores} cores, the rest as it was (engine)",
            ratio_text(bound),
        )
    )
    section.rows.append(Row("leaks after", node.leak_text(found), "0", not any(found.values())))
    section.data = {
        "rounds": rounds,
        "networks": len(NETWORKS),
        "entry_points": node.describe(runtimes),
        "ms": {s: {k: v.to_dict(1e3) for k, v in d.items()} for s, d in summaries.items()},
        "ratios_per_round": {k: v.to_dict() for k, v in ratios.items()},
        "leaks": found,
    }
    order = [f"{p} {t}" for p in ("shim", "engine") for t in ("parallel", "sequential")]
    order = [s for s in order if s in summaries]
    section.panels.append(
        Panel(
            "ADD, pod with 4 secondary networks (median, p10-p90)",
            "bars",
            "ms",
            labels=[s.replace(" ", "\n") for s in order],
            values=[summaries[s]["add"].median * 1e3 for s in order],
            low=[summaries[s]["add"].p10 * 1e3 for s in order],
            high=[summaries[s]["add"].p90 * 1e3 for s in order],
        )
    )
    return section


def _bind(runtime: node.Runtime, sandbox: Any) -> Any:
    return lambda: add_del(runtime, sandbox)
