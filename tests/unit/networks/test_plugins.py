"""What the bin dirs said about each plugin, as findings (networks.plugins)."""

from __future__ import annotations

from multihome.cni.output import PluginInfo
from multihome.networks.attachment import Attachment, plan_pod
from multihome.networks.plugins import Probe, plugin_findings, plugin_types

from .helpers import CLUSTER, Nads, by_code, config, nad, pod, request

CHAIN = {
    "cniVersion": "1.1.0",
    "plugins": [{"type": "macvlan", "ipam": {"type": "whereabouts"}}, {"type": "tuning"}],
}
ALL = PluginInfo("1.1.0", ("0.3.1", "1.0.0", "1.1.0"))
PATH = ("/opt/cni/bin", "/usr/lib/cni")


def attachments() -> tuple[Attachment, ...]:
    lookup = Nads(nad("kube-system", "cluster", CLUSTER), nad("default", "chain", CHAIN))
    plan, findings = plan_pod(
        config=config(), pod=pod(networks="chain"), request=request(), nads=lookup
    )
    assert findings == []
    return plan.attachments


def test_every_plugin_and_ipam_type_once_in_order() -> None:
    assert plugin_types(attachments()) == ["bridge", "macvlan", "whereabouts", "tuning"]


def test_every_problem_at_once_with_its_path() -> None:
    probes = {
        "bridge": Probe("/usr/lib/cni/bridge", ALL),
        "macvlan": Probe("/opt/cni/bin/macvlan", PluginInfo("1.0.0", ("0.3.1", "1.0.0"))),
        "whereabouts": Probe(),
        "tuning": Probe("/opt/cni/bin/tuning", problem="Permission denied", executable=False),
    }
    findings = plugin_findings(attachments(), probes, cni_path=PATH)
    assert [(f.code, f.path) for f in findings] == [
        ("plugin-version-unsupported", "nad[default/chain].spec.config.plugins[0].type"),
        ("plugin-not-found", "nad[default/chain].spec.config.plugins[0].ipam.type"),
        ("plugin-not-executable", "nad[default/chain].spec.config.plugins[1].type"),
    ]
    unsupported, missing, _ = findings
    assert "0.3.1, 1.0.0" in unsupported.message and "1.1.0" in unsupported.message
    assert "'whereabouts'" in missing.message and "[/opt/cni/bin /usr/lib/cni]" in missing.message


def test_a_plugin_that_does_not_answer_version_is_a_warning() -> None:
    probes = {"tuning": Probe("/opt/cni/bin/tuning", problem="no answer within 5 s")}
    [finding] = plugin_findings(attachments(), probes, cni_path=PATH)
    assert (finding.code, finding.severity) == ("plugin-version-unknown", "warning")
    assert by_code([finding], "plugin-version-unknown").path.endswith("plugins[1].type")
