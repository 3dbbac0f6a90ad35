"""How to reach the API server: host, TLS material and credentials.

The kubernetes library's config loaders do the parsing (kubeconfig contexts, embedded or
file-based certificates, exec plugins, in-cluster files); kubewatch only reads the result
off a plain attribute bag, so none of the library's model or API machinery is involved.
The library is imported lazily: it costs about 20 MB of RSS, which a manifest-only or
explicit-URL setup never pays.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kubewatch.errors import ConfigError

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_TOKEN = f"{SA_DIR}/token"
SA_CA = f"{SA_DIR}/ca.crt"


class Auth(Protocol):
    """How requests authenticate: a header value now, and a way to reload it after a 401."""

    def header(self) -> str | None:
        """The Authorization header value to send now, if any."""

    def refresh(self) -> bool:
        """Called after a 401: reload the credential; True if it changed (worth a retry)."""


class NoAuth:
    """No credential: no Authorization header."""

    def header(self) -> str | None:
        return None

    def refresh(self) -> bool:
        return False


@dataclass
class StaticToken:
    """A bearer token that never changes."""

    token: str

    def header(self) -> str | None:
        return f"Bearer {self.token}"

    def refresh(self) -> bool:
        return False


class TokenFile:
    """A bearer token read from a file that is rewritten as it rotates.

    Kubelet refreshes projected service-account tokens well before they expire by swapping a
    symlink, so the file's identity is checked (one stat) on every request and re-read when
    it changed; a 401 forces a re-read whatever the stat says.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._token = ""
        self._stamp: tuple[int, int, int] | None = None
        self._read()

    def _read(self) -> bool:
        try:
            st = self.path.stat()
            token = self.path.read_text().strip()
        except OSError as exc:
            if self._token:
                return False  # keep the last token; the file may be mid-rotation
            raise ConfigError(f"cannot read token file {self.path}: {exc}") from exc
        changed = token != self._token
        self._token = token
        self._stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        return changed

    def header(self) -> str | None:
        try:
            st = self.path.stat()
            if (st.st_ino, st.st_mtime_ns, st.st_size) != self._stamp:
                self._read()
        except OSError:
            pass
        return f"Bearer {self._token}" if self._token else None

    def refresh(self) -> bool:
        return self._read()


class _LoaderTarget:
    """The attribute bag the kubernetes config loaders write their results into."""

    def __init__(self) -> None:
        self.api_key: dict[str, str] = {}
        self.api_key_prefix: dict[str, str] = {}
        self.host = ""
        self.ssl_ca_cert: str | None = None
        self.cert_file: str | None = None
        self.key_file: str | None = None
        self.verify_ssl = True
        self.tls_server_name: str | None = None
        self.proxy: str | None = None
        self.refresh_api_key_hook: Any = None


class KubeconfigAuth:
    """Credentials from a kubeconfig: static token, token file, basic auth or exec plugin."""

    def __init__(self, path: str | None, context: str | None, target: _LoaderTarget) -> None:
        self._path = path
        self._context = context
        self._target = target

    def header(self) -> str | None:
        hook = self._target.refresh_api_key_hook
        if hook is not None:
            # The loader's hook re-runs exec plugins / re-reads tokens only once expired.
            hook(self._target)
        return self._target.api_key.get("BearerToken") or self._target.api_key.get("authorization")

    def refresh(self) -> bool:
        before = self.header()
        try:
            self._target = _load_kubeconfig(self._path, self._context)
        except ConfigError:
            return False
        return self.header() != before


def _load_kubeconfig(path: str | None, context: str | None) -> _LoaderTarget:
    from kubernetes.config import ConfigException, kube_config

    target = _LoaderTarget()
    try:
        kube_config.load_kube_config(
            config_file=path, context=context, client_configuration=target, persist_config=False
        )
    except (ConfigException, OSError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"kubeconfig {path or '(default)'}: {exc}") from exc
    return target


@dataclass
class ClusterConfig:
    """Resolved connection parameters. Build with from_kubeconfig, in_cluster or from_url."""

    host: str
    auth: Auth = field(default_factory=NoAuth)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_ssl: bool = True
    tls_server_name: str | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str] | None = None, context: str | None = None) -> ClusterConfig:
        """From a kubeconfig file (default: $KUBECONFIG, then ~/.kube/config) and context."""
        path_s = os.fspath(path) if path is not None else None
        target = _load_kubeconfig(path_s, context)
        if not target.host:
            raise ConfigError(f"kubeconfig {path_s or '(default)'}: the cluster has no server")
        return cls(
            host=target.host,
            auth=KubeconfigAuth(path_s, context, target),
            ca_file=target.ssl_ca_cert,
            cert_file=target.cert_file,
            key_file=target.key_file,
            verify_ssl=target.verify_ssl,
            tls_server_name=target.tls_server_name,
        )

    @classmethod
    def in_cluster(
        cls,
        *,
        token_path: str | os.PathLike[str] = SA_TOKEN,
        ca_path: str | os.PathLike[str] = SA_CA,
        environ: dict[str, str] | None = None,
    ) -> ClusterConfig:
        """From the pod's service account and KUBERNETES_SERVICE_HOST/PORT."""
        from kubernetes.config import ConfigException
        from kubernetes.config.incluster_config import InClusterConfigLoader

        target = _LoaderTarget()
        loader = InClusterConfigLoader(
            token_filename=os.fspath(token_path),
            cert_filename=os.fspath(ca_path),
            try_refresh_token=False,
            environ=os.environ if environ is None else environ,
        )
        try:
            loader.load_and_set(target)
        except (ConfigException, OSError) as exc:
            raise ConfigError(f"in-cluster config: {exc}") from exc
        return cls(host=target.host, auth=TokenFile(token_path), ca_file=target.ssl_ca_cert)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        insecure: bool = False,
    ) -> ClusterConfig:
        """An explicit endpoint (CoreDNS's ``endpoint`` + ``tls``), optionally with a token."""
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint {url!r} must start with http:// or https://")
        auth: Auth = NoAuth()
        if token_file is not None:
            auth = TokenFile(token_file)
        elif token:
            auth = StaticToken(token)
        return cls(
            host=url.rstrip("/"),
            auth=auth,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            verify_ssl=not insecure,
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for https hosts; None for plain http."""
        if not self.host.startswith("https://"):
            return None
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS material for {self.host}: {exc}") from exc
        if not self.verify_ssl:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx
