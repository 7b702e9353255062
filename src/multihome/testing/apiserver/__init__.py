"""A Kubernetes API server double for tests, benchmarks and the demo.

There is no cluster here, and multihome's client must still be tested
against the API's real manners: resourceVersions, watches that resume or
expire (410), conflicts (409), bearer tokens, slow or failing requests.
This double serves pods (with ``pods/status``), NetworkAttachmentDefinitions
and events over HTTP, as JSON, the way kube-apiserver does, and lets a test
inject latency and faults and count every request by audit verb and resource.

In process::

    async with ApiServerDouble(tokens=["t0k3n"]) as api:
        api.create(pod_manifest)
        ...  # a client talks to api.url
        assert api.count("patch", "pods/status") == 1

From synchronous code: ``with run_in_thread() as api: ...``.  As a process:
``python -m multihome.testing.apiserver --port 8080 --state DIR`` (the knobs
are then under ``/_double/``; see `server`).
"""

from multihome.testing.apiserver.server import (
    ApiServerDouble,
    RequestRecord,
    main,
    run_in_thread,
    write_kubeconfig,
)
from multihome.testing.apiserver.status import ApiError

__all__ = [
    "ApiError",
    "ApiServerDouble",
    "RequestRecord",
    "main",
    "run_in_thread",
    "write_kubeconfig",
]
