"""BackendTLS: TLS from nginx to an HTTPS (or gRPCS) backend (proxy-ssl-*), per location.

proxy-ssl-secret names a Secret in the Ingress's namespace holding ``ca.crt`` (the CAs the
backend's certificate is verified against) and, optionally, ``tls.crt`` with ``tls.key`` (the
client certificate nginx shows the backend), the layout ingress-nginx documents. Both are parsed
and written again (nothing else of the Secret reaches a file) under --config-dir/auth; nginx's
master reads them at load (proxy_ssl_trusted_certificate, proxy_ssl_certificate), so they are
0600 and ours. A missing or broken Secret answers 503, as for the other Secret-backed groups.

Without proxy-ssl-name nginx checks the backend's certificate against the name in proxy_pass
(``portolan_balancer``), as ingress-nginx checks it against its upstream's name: with
proxy-ssl-verify on, set proxy-ssl-name to a name the backend's certificate holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ingress.features import LOCATION, Context, Feature, SideFile, parse_fields, same_namespace, secret_ref
from ingress.features.client_tls import ca_bundle, depth
from ingress.validate import host
from kubewatch import Secret

PROTOCOLS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
# An OpenSSL cipher list ("ECDHE-RSA-AES128-GCM-SHA256:!aNULL", "HIGH:+SHA256"): its own alphabet only.
_CIPHERS_RE = re.compile(r"[A-Za-z0-9!+@=_.:-]{1,1024}")


@dataclass(frozen=True, slots=True)
class BackendTLS:
    """proxy-ssl-*: the Secret and how the backend is verified; resolved: the files, or a denial."""

    group: ClassVar[str] = "backend_tls"
    secret: str
    secret_namespace: str | None = None
    verify: bool = False
    depth: int = 1
    name: str | None = None
    server_name: bool = False
    protocols: tuple[str, ...] = ()  # () : nginx's default
    ciphers: str | None = None
    ca: SideFile | None = None  # resolved
    client: SideFile | None = None  # resolved: chain and key, when the Secret has tls.crt and tls.key
    denied: str = ""  # resolved: the location answers 503

    @property
    def files(self) -> tuple[SideFile, ...]:
        return tuple(f for f in (self.ca, self.client) if f is not None)


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise ValueError("not on or off")
    return text == "on"


def _protocols(text: str) -> tuple[str, ...]:
    items = tuple(text.split())
    if not items or any(p not in PROTOCOLS for p in items):
        raise ValueError(f"not a list of {', '.join(PROTOCOLS)}")
    return tuple(dict.fromkeys(items))


def _ciphers(text: str) -> str:
    if not _CIPHERS_RE.fullmatch(text):
        raise ValueError("not an OpenSSL cipher list")
    return text


def _name(text: str) -> str:
    return host(text, "proxy-ssl-name", wildcard=False)


_FIELDS: dict[str, tuple[str, Any]] = {
    "proxy-ssl-verify": ("verify", _on_off),
    "proxy-ssl-verify-depth": ("depth", depth),
    "proxy-ssl-name": ("name", _name),
    "proxy-ssl-server-name": ("server_name", _on_off),
    "proxy-ssl-protocols": ("protocols", _protocols),
    "proxy-ssl-ciphers": ("ciphers", _ciphers),
}


def parse(raw: Mapping[str, str], notes: list[str]) -> BackendTLS | None:
    if "proxy-ssl-secret" not in raw:
        for key in sorted(raw):
            notes.append(f"annotation {key} ignored: no proxy-ssl-secret")
        return None
    values = parse_fields(raw, {"proxy-ssl-secret": ("ref", secret_ref), **_FIELDS})
    values["secret_namespace"], values["secret"] = values.pop("ref")
    return BackendTLS(**values)


def client_pair(crt: bytes, key: bytes) -> bytes:
    """The chain and its key, parsed and written again; ValueError when broken or not a pair."""
    from cryptography.hazmat.primitives import serialization

    chain = ca_bundle(crt)
    private = serialization.load_pem_private_key(key, password=None)
    from cryptography import x509

    leaf = x509.load_pem_x509_certificates(chain)[0]
    pub = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*pub) != private.public_key().public_bytes(*pub):
        raise ValueError("tls.key is not the key of tls.crt")
    return chain + private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())  # fmt: skip


def resolve(value: BackendTLS | None, ctx: Context) -> BackendTLS | None:
    if value is None:
        return None
    secret, denied = same_namespace("Secret", value.secret_namespace, value.secret, ctx, "ca.crt")
    if isinstance(secret, Secret):
        try:
            ca = SideFile.of("ca.pem", ca_bundle(secret.data["ca.crt"]))
            client = None
            data = secret.data
            if "tls.crt" in data or "tls.key" in data:
                client = SideFile.of("pem", client_pair(data.get("tls.crt", b""), data.get("tls.key", b"")))
            return replace(value, ca=ca, client=client)
        except (ValueError, TypeError) as exc:
            denied = f"Secret {ctx.namespace}/{value.secret}: {exc}"
    ctx.notes.append(f"{ctx.ingress}: proxy-ssl-secret: {denied}: 503")
    return replace(value, denied=denied)


FEATURE = Feature(
    group="backend_tls",
    annotations=("proxy-ssl-secret", "proxy-ssl-verify", "proxy-ssl-verify-depth", "proxy-ssl-name",
                 "proxy-ssl-server-name", "proxy-ssl-protocols", "proxy-ssl-ciphers"),
    scope=LOCATION,
    risk="Medium",
    differs="proxy-ssl-name must be a host name (no variables); without proxy-ssl-protocols or proxy-ssl-ciphers "
    "nginx's defaults apply (TLSv1.2 TLSv1.3), not ingress-nginx's (which still offer TLSv1 and TLSv1.1); "
    "tls.crt and tls.key are optional, and a Secret without ca.crt or with a broken one answers 503",
    parse=parse,
    resolve=resolve,
)
