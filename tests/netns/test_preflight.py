"""Before any plugin runs: every plugin is installed, executable and speaks its version.

A NAD naming a plugin that is not installed used to run every other network
first, fail, and roll back; with parallel delegates only the first failure
was reported.  Real plugins (Debian's), real namespaces, a real bin dir.
"""

from __future__ import annotations

import pytest

from multihome.cni.errors import CNIError
from multihome.testing.lab import Lab
from multihome.testing.world import World

pytestmark = pytest.mark.netns

OLD_PLUGIN = """#!/bin/sh
# Speaks 0.3.1 only; records every command it gets.
echo "$CNI_COMMAND" >> "$0.log"
echo '{"cniVersion":"0.3.1","supportedVersions":["0.3.1"]}'
"""


def test_every_plugin_problem_is_reported_before_any_plugin_runs(lab: Lab) -> None:
    world = World(lab, mode="engine")
    bindir = world.root / "bin"
    bindir.mkdir()
    (bindir / "old-plugin").write_text(OLD_PLUGIN)
    (bindir / "old-plugin").chmod(0o755)
    (bindir / "no-exec").write_text("#!/bin/sh\n")
    (bindir / "no-exec").chmod(0o644)
    world.config["binDir"] = str(bindir)  # then the runtime's CNI_PATH, /usr/lib/cni
    lan = lab.macvlan_parent("lan")
    world.macvlan_nad("fine", master=lan, subnet=world.lan_subnet(1))
    world.nad("ghost", {"cniVersion": "1.0.0", "type": "no-such-plugin"})
    world.nad("noexec", {"cniVersion": "1.0.0", "type": "no-exec"})
    world.nad("old", {"cniVersion": "1.0.0", "type": "old-plugin"})
    world.nad(
        "ipam",
        {"cniVersion": "1.0.0", "type": "macvlan", "master": lan, "ipam": {"type": "nope"}},
    )
    pod = world.pod("web", "fine,ghost,noexec,old,ipam")

    with pytest.raises(CNIError) as err:
        world.add(pod)

    assert err.value.code == 7
    msg = err.value.msg
    assert msg.startswith("pod default/web: 4 errors: ")
    for path in ("ghost", "noexec", "old", "ipam"):
        assert f"nad[default/{path}].spec.config" in msg
    assert "'no-such-plugin'" in msg and "'nope'" in msg and "Permission denied" in msg
    assert "supports CNI versions 0.3.1, not the network's 1.0.0" in msg
    # Nothing ran: not the cluster network, not "fine"; the old plugin was only asked VERSION.
    assert set(lab.links(pod.netns)) == {"lo"}
    assert world.allocations() == {}
    assert world.cached_containers() == []
    assert (bindir / "old-plugin.log").read_text() == "VERSION\n"

    # VERSION is asked once per binary while it is unchanged.
    with pytest.raises(CNIError):
        world.add(pod)
    assert (bindir / "old-plugin.log").read_text() == "VERSION\n"


def test_every_failing_parallel_delegate_is_reported(lab: Lab) -> None:
    world = World(lab, mode="engine", parallel=True)
    world.macvlan_nad("a", master=lab.name("gone1"), subnet=world.lan_subnet(1))
    world.macvlan_nad("b", master=lab.name("gone2"), subnet=world.lan_subnet(2))
    pod = world.pod("web", "a,b")

    with pytest.raises(CNIError) as err:
        world.add(pod)

    msg = err.value.msg
    assert msg.startswith("pod default/web: 2 networks failed: failed to add network 'default/a'")
    assert "; failed to add network 'default/b' as net2" in msg
    assert msg.count("Link not found") == 2
    assert set(lab.links(pod.netns)) == {"lo"}
    assert world.allocations() == {}
