"""Self-signed certificates for tests, made with the openssl command line."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(where: Path, *, common_name: str, alt_names: str) -> tuple[Path, Path]:
    """``tls.crt`` and ``tls.key`` in ``where``: an EC P-256 pair valid for a day.

    ``alt_names`` is the subjectAltName value, e.g. ``"IP:127.0.0.1,DNS:localhost"``.
    """
    cert, key = where / "tls.crt", where / "tls.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", f"/CN={common_name}",
            "-addext", f"subjectAltName={alt_names}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
