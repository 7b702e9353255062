"""`multihome webhook` as a process: the CLI the deploy manifests run, JSON logs, TLS."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from multihome.testing.apiserver import run_in_thread
from multihome.testing.tls import self_signed

WAIT = 30.0
MULTICAST = '[{"name": "lan", "mac": "01:00:5e:00:00:01"}]'


def make_certificate(where: Path) -> tuple[Path, Path]:
    return self_signed(where, common_name="multihome-webhook", alt_names="IP:127.0.0.1")


def next_log(proc: subprocess.Popen[str]) -> dict:
    """The next JSON log line of the process (a blocking read: no polling, no sleep)."""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line, "the webhook exited"
    return json.loads(line)


def test_the_webhook_command_serves_reviews_and_logs_json(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    with run_in_thread(tokens=["t"]) as api:
        api.create(
            {
                "apiVersion": "k8s.cni.cncf.io/v1",
                "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": "lan", "namespace": "default"},
                "spec": {"config": '{"cniVersion": "1.0.0", "type": "macvlan", "master": "eth1"}'},
            }
        )
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "multihome", "webhook", "--cert", str(cert),
                "--key", str(key), "--port", "0", "--kubeconfig", str(kubeconfig),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            started = next_log(proc)
            while "serving admission reviews" not in started["msg"]:
                started = next_log(proc)
            assert started["level"] == "info" and started["logger"] == "multihome.doctor.webhook"
            url = started["msg"].rsplit(" on ", 1)[1].replace("0.0.0.0", "127.0.0.1")
            context = ssl.create_default_context(cafile=str(cert))
            review = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": "b7e0c9a4-1",
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "default",
                    "operation": "CREATE",
                    "object": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {
                            "name": "web",
                            "annotations": {"k8s.v1.cni.cncf.io/networks": MULTICAST},
                        },
                    },
                    "dryRun": True,
                },
            }
            request = urllib.request.Request(
                url,
                data=json.dumps(review).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, context=context, timeout=WAIT) as response:
                answer = json.load(response)["response"]
            assert answer["uid"] == "b7e0c9a4-1"
            assert answer["allowed"] is False
            assert "[mac-multicast]" in answer["status"]["message"]
            logged = next_log(proc)
            while "CREATE Pod" not in logged["msg"]:
                logged = next_log(proc)
            assert logged["request"] == "b7e0c9a4-1"
            assert logged["pod"] == "default/web"
            assert logged["msg"].startswith("CREATE Pod default/web: denied (mac-multicast) in ")
            assert logged["msg"].endswith(" (dry run)")
            health = url.replace("/validate", "/healthz")
            with urllib.request.urlopen(health, context=context, timeout=WAIT) as response:
                assert json.load(response)["ok"] is True
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=WAIT)
            if proc.stderr is not None:
                proc.stderr.close()
        assert code == 0  # SIGTERM is a clean shutdown
