"""1. Overhead: ADD+DEL of a pod with one static-IPAM macvlan network, multihome vs. no multihome.

The pod has the cluster network (bridge + host-local) on eth0 and one
macvlan network with static IPAM (its address from the pod annotation) on
net1.  Four sides, interleaved round by round on one lab, each with its own
sandbox:

* ``shim``: the runtime execs multihome-shim, which asks the daemon;
* ``thin``: the runtime execs the thin plugin ``multihome-cni``;
* ``engine``: the engine in this process (multihome's own work, no process);
* ``direct``: the same delegate configs exec'd directly (`bench.direct`).

Targets: shim/direct <= 1.25 (design.md, quality bars); thin/direct is
reported, without a target.
"""

from __future__ import annotations

import time
from typing import Any

from multihome.testing.lab import CNI_BIN_DIR, lab
from multihome.testing.world import Sandbox, World

from . import node
from .context import Settings
from .direct import DirectRuntime
from .report import Panel, Row, Section
from .stats import Summary, Timings, interleaved, paired, ratio_text

NAME = "overhead"
TARGET = 1.25


def add_del(runtime: node.Runtime, sandbox: Sandbox) -> Timings:
    started = time.perf_counter()
    runtime.call("ADD", sandbox)
    added = time.perf_counter()
    runtime.call("DEL", sandbox)
    done = time.perf_counter()
    return {"add": added - started, "del": done - added, "total": done - started}


def static_pod(world: World, name: str, networks: list[str], host: int) -> Sandbox:
    """A pod on ``networks`` (static macvlan NADs), address ``.host`` in LAN i+1 for network i."""
    return world.pod(
        name,
        [
            {"name": net, "ips": [world.host(world.lan_subnet(i + 1), host) + "/24"]}
            for i, net in enumerate(networks)
        ],
    )


def run(settings: Settings) -> Section:
    section = Section(NAME, "Overhead: ADD+DEL, one static macvlan network", settings.command(NAME))
    rounds = settings.pick(30, 6)
    with lab() as the_lab, node.maybe_daemon(section) as daemon:
        world = World(the_lab)
        world.macvlan_nad("lan1", master=the_lab.macvlan_parent("lan"), static=True)
        runtimes: dict[str, node.Runtime] = {}
        sandboxes: dict[str, Sandbox] = {}
        if daemon is not None:
            runtimes["shim"] = node.shim_runtime(world, socket_dir=daemon.socket_dir)
        runtimes["thin"] = node.thin_runtime(world)
        engine = node.engine_runtime(world)
        runtimes["engine"] = engine
        for index, name in enumerate([*runtimes, "direct"]):
            sandboxes[name] = static_pod(world, f"pod-{name}", ["lan1"], 10 + index)
        try:
            # The baseline runs what the engine ran: its cache record after one ADD.
            direct_pod = sandboxes["direct"]
            engine.call("ADD", direct_pod)
            runtimes["direct"] = DirectRuntime.from_cache(
                world.cni_dir / "multihome",
                direct_pod.container_id,
                cni_path=(CNI_BIN_DIR, CNI_BIN_DIR),
            )
            engine.call("DEL", direct_pod)
            samples = interleaved(
                {name: _side(rt, sandboxes[name]) for name, rt in runtimes.items()},
                rounds=rounds,
            )
        finally:
            engine.close()
        found = node.leaks(world, list(sandboxes.values()))

    summaries = {
        side: {key: Summary.of(values) for key, values in timings.items()}
        for side, timings in samples.items()
    }
    labels = {
        "shim": "a  shim -> daemon",
        "thin": "b  thin plugin",
        "engine": "   engine in-process",
        "direct": "c  delegates directly",
    }
    for side in ("shim", "thin", "engine", "direct"):
        if side in summaries:
            got = summaries[side]
            section.rows.append(
                Row(
                    f"{labels[side]} ADD+DEL",
                    f"{got['total'].ms()}; ADD {got['add'].median * 1e3:.0f}, "
                    f"DEL {got['del'].median * 1e3:.0f}",
                )
            )
    base = summaries["direct"]["total"].median
    # Per-round ratios (the sides ran back to back in each round), and ratios of medians.
    ratios: dict[str, Any] = {}
    for side in ("shim", "thin", "engine"):
        if side not in summaries:
            continue
        ratios[side] = {
            "per_round": {
                k: paired(samples[side][k], samples["direct"][k]).to_dict()
                for k in ("add", "del", "total")
            },
            "of_medians": {
                k: summaries[side][k].median / summaries["direct"][k].median
                for k in ("add", "del", "total")
            },
        }
    if "shim" in ratios:
        a_c = paired(samples["shim"]["total"], samples["direct"]["total"])
        section.rows.append(
            Row(
                "a/c (shim / direct), per round",
                ratio_text(a_c),
                f"<= {TARGET}",
                a_c.median <= TARGET,
            )
        )
    else:
        section.rows.append(
            Row("a/c (shim / direct)", "not measured: no daemon", f"<= {TARGET}", False)
        )
    for side, label in (("thin", "b/c (thin / direct)"), ("engine", "engine / direct")):
        section.rows.append(
            Row(
                f"{label}, per round",
                ratio_text(paired(samples[side]["total"], samples["direct"]["total"])),
            )
        )
    section.rows.append(
        Row(
            "leaks after (links, ports, leases, cache)",
            node.leak_text(found),
            "0",
            not any(found.values()),
        )
    )
    for side in ratios:
        extra = summaries[side]["total"].median - base
        section.notes.append(f"{side}: +{extra * 1e3:.1f} ms per ADD+DEL over the delegates alone")
    section.data = {
        "rounds": rounds,
        "entry_points": node.describe(runtimes),
        "ms": {s: {k: v.to_dict(1e3) for k, v in d.items()} for s, d in summaries.items()},
        "ratios": ratios,
        "leaks": found,
    }
    order: list[str] = [s for s in ("shim", "thin", "engine", "direct") if s in summaries]
    section.panels.append(
        Panel(
            "ADD+DEL, one static macvlan network (median, p10-p90)",
            "bars",
            "ms",
            labels=order,
            values=[summaries[s]["total"].median * 1e3 for s in order],
            low=[summaries[s]["total"].p10 * 1e3 for s in order],
            high=[summaries[s]["total"].p90 * 1e3 for s in order],
        )
    )
    return section


def _side(runtime: node.Runtime, sandbox: Sandbox) -> Any:
    return lambda: add_del(runtime, sandbox)
