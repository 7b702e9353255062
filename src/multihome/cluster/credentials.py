"""Where the Kubernetes API server is and how the node proves who it is.

Two ways, as client-go has them: the pod's service account (in-cluster:
``KUBERNETES_SERVICE_HOST``/``PORT``, the CA and the projected token under
``/var/run/secrets/kubernetes.io/serviceaccount``) and a kubeconfig file
(Multus' ``kubeconfig`` key).  A kubeconfig is read here rather than with a
client library: the daemon needs its current context's server, CA,
``insecure-skip-tls-verify``, ``tls-server-name``, a token or token file and
a client certificate, nothing else.  A kubeconfig in JSON (``kubectl config
view --raw -o json``) is read with ``json``: PyYAML's import is a tenth of
the thin plugin's start-up, paid only for a YAML file.

Projected service-account tokens expire (one hour by default) and the
kubelet rewrites the file long before; `TokenSource` re-reads the file when
it changes, so the daemon never needs a restart for a new token.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class CredentialsError(Exception):
    """The API server or credentials cannot be determined; the message names the source."""


@dataclass(frozen=True)
class Credentials:
    """The API server's address and everything needed to talk to it."""

    server: str  # "https://host:port", possibly with a path prefix
    ca_file: str | None = None
    ca_data: str | None = None  # PEM
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: str | None = None  # PEM
    key_data: str | None = None  # PEM
    token: str | None = None
    token_file: str | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    origin: str = ""  # where these came from, for messages

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS settings for an https server; None for plain http (the test double)."""
        if not self.server.startswith("https://"):
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
            if self.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if self.cert_file or self.cert_data:
                _load_client_cert(context, self)
        except (OSError, ssl.SSLError, ValueError) as err:
            raise CredentialsError(f"cannot set up TLS from {self.origin}: {err}") from err
        return context

    def tokens(self) -> TokenSource:
        return TokenSource(token=self.token, path=self.token_file)


def _load_client_cert(context: ssl.SSLContext, creds: Credentials) -> None:
    # The ssl module loads certificates from files only: inline data goes
    # through a private temporary directory that is removed at once.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="multihome-tls-") as tmp:
        cert, key = creds.cert_file, creds.key_file
        if creds.cert_data:
            cert = os.path.join(tmp, "tls.crt")
            Path(cert).write_text(creds.cert_data)
        if creds.key_data:
            key = os.path.join(tmp, "tls.key")
            Path(key).write_text(creds.key_data)
        if cert is None:
            raise CredentialsError(f"{creds.origin}: a client key needs a client certificate")
        context.load_cert_chain(cert, key)


class TokenSource:
    """The bearer token: fixed, or read from a file and re-read when the file changes.

    `current` stats the file on every call (one syscall, far cheaper than
    the request it authorises) and reads it again when its identity, size or
    mtime changed: a projected volume swaps a symlink, so the inode changes
    even when the kernel's coarse mtime does not.
    """

    def __init__(self, *, token: str | None = None, path: str | None = None) -> None:
        self._fixed = token
        self.path = path
        self._token: str | None = None
        self._stamp: tuple[int, int, int, int] | None = None
        self.reads = 0

    def current(self, *, force: bool = False) -> str | None:
        if self.path is None:
            return self._fixed
        try:
            st = os.stat(self.path)
        except OSError:
            # A file being swapped: keep the token we have, if any.
            if self._token is None:
                return self._fixed
            return self._token
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if force or stamp != self._stamp:
            try:
                self._token = Path(self.path).read_text().strip()
            except OSError:
                return self._token if self._token is not None else self._fixed
            self._stamp = stamp
            self.reads += 1
        return self._token


def load(kubeconfig: str = "", *, context: str = "") -> Credentials:
    """From the kubeconfig when one is named, else the pod's service account."""
    if kubeconfig:
        return from_kubeconfig(kubeconfig, context=context)
    return in_cluster()


def in_cluster(
    *,
    environ: Mapping[str, str] | None = None,
    directory: str | os.PathLike[str] = SERVICE_ACCOUNT_DIR,
) -> Credentials:
    """The pod's service account, as client-go's ``rest.InClusterConfig``."""
    env = os.environ if environ is None else environ
    host = env.get("KUBERNETES_SERVICE_HOST", "")
    port = env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise CredentialsError(
            "not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
            "are not set; give a kubeconfig instead"
        )
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    root = Path(directory)
    token_file = root / "token"
    if not token_file.is_file():
        raise CredentialsError(f"the service account token {token_file} does not exist")
    ca = root / "ca.crt"
    return Credentials(
        server=f"https://{host}:{port}",
        ca_file=str(ca) if ca.is_file() else None,
        token_file=str(token_file),
        origin=f"the service account in {root}",
    )


def from_kubeconfig(path: str | os.PathLike[str], *, context: str = "") -> Credentials:
    """The cluster and user of `context` (default: the current context) in a kubeconfig."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as err:
        raise CredentialsError(f"cannot read kubeconfig {file}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise CredentialsError(
            f"cannot read kubeconfig {file}: it is not UTF-8 text (byte {err.start})"
        ) from err
    doc = _parse(text, file)
    if not isinstance(doc, dict):
        raise CredentialsError(f"kubeconfig {file} is not a YAML mapping")
    name = context or str(doc.get("current-context") or "")
    if not name:
        raise CredentialsError(f"kubeconfig {file} has no current-context; name a context")
    ctx = _named(doc, "contexts", "context", name, file)
    cluster = _named(doc, "clusters", "cluster", str(ctx.get("cluster") or ""), file)
    user_name = str(ctx.get("user") or "")
    user = _named(doc, "users", "user", user_name, file) if user_name else {}
    origin = f"kubeconfig {file} (context {name!r})"
    for unsupported in ("exec", "auth-provider", "username"):
        if user.get(unsupported):
            raise CredentialsError(
                f"{origin}: user {user_name!r} authenticates with {unsupported!r}, which multihome "
                "does not support; use a token, tokenFile or a client certificate"
            )
    server = str(cluster.get("server") or "")
    if not server.startswith(("https://", "http://")):
        raise CredentialsError(f"{origin}: cluster server {server!r} is not an http(s) URL")
    base = file.parent

    def text_of(key: str, section: dict[str, Any]) -> str | None:
        # A value of the wrong type is named by its type only: it may be a
        # credential put in the wrong place, and messages never show those.
        value = section.get(key)
        if not value:
            return None
        if not isinstance(value, str):
            raise CredentialsError(f"{origin}: {key} must be a string, not {_kind(value)}")
        return value

    def path_of(key: str, section: dict[str, Any]) -> str | None:
        value = text_of(key, section)
        if value is None:
            return None
        if "\n" in value or "-----BEGIN" in value or len(value) > _MAX_PATH:
            raise CredentialsError(
                f"{origin}: {key} must be a file path; it holds something else"
                f" (inline data goes into {key}-data)"
            )
        return str(base / value)

    def data_of(key: str, section: dict[str, Any]) -> str | None:
        value = text_of(key, section)
        if value is None:
            return None
        try:
            return base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as err:
            raise CredentialsError(f"{origin}: {key} is not base64 of PEM text: {err}") from None

    token = text_of("token", user)
    if token is not None and not token.isprintable():
        raise CredentialsError(f"{origin}: token contains a line break or a control character")

    return Credentials(
        server=server.rstrip("/"),
        ca_file=path_of("certificate-authority", cluster),
        ca_data=data_of("certificate-authority-data", cluster),
        cert_file=path_of("client-certificate", user),
        key_file=path_of("client-key", user),
        cert_data=data_of("client-certificate-data", user),
        key_data=data_of("client-key-data", user),
        token=token,
        token_file=path_of("tokenFile", user),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=str(cluster["tls-server-name"]) if cluster.get("tls-server-name") else None,
        origin=origin,
    )


def _parse(text: str, file: Path) -> Any:
    """The document: JSON's when it is JSON, else PyYAML's (imported only then)."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            pass  # not JSON after all (YAML's flow style is close): YAML says what is wrong
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        raise CredentialsError(f"cannot parse kubeconfig {file}: {_yaml_problem(err)}") from None
    except Exception as err:  # the constructors raise plain errors (dates, nesting)
        raise CredentialsError(
            f"cannot parse kubeconfig {file}: {type(err).__name__} while reading its YAML"
        ) from None


_MAX_PATH = 4096
# A quoted part of a YAML message longer than this may be a piece of the file
# (a pattern, not a compiled one: only a broken kubeconfig needs it).
_QUOTED = r"'([^'<][^']{3,})'|\"([^\"<][^\"]{3,})\""


def _yaml_problem(err: Any) -> str:
    """What PyYAML found and where, without the excerpt of the file it quotes.

    PyYAML's message shows the offending line, which may be the token's:
    only its description of the problem and the position are kept.
    """
    parts = [str(p) for p in (err.context, err.problem) if p]
    text = re.sub(_QUOTED, "'...'", ", ".join(parts) or "a YAML syntax error")
    mark = err.problem_mark or err.context_mark
    if mark is not None:
        text += f" at line {mark.line + 1}, column {mark.column + 1}"
    return text


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _named(doc: dict[str, Any], section: str, key: str, name: str, file: Path) -> dict[str, Any]:
    entries = doc.get(section)
    if not isinstance(entries, list):
        entries = []
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(key)
            return value if isinstance(value, dict) else {}
    known = sorted(str(e.get("name")) for e in entries if isinstance(e, dict))
    raise CredentialsError(
        f"kubeconfig {file} has no {key} named {name!r} (it has: {', '.join(known) or 'none'})"
    )
