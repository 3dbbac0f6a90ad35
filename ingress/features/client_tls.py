"""ClientTLS: client certificates (auth-tls-*), a server-level group: the oldest Ingress of a
host that sets auth-tls-secret decides for the whole host, as in ingress-nginx.

How it fits our TLS: certificates are chosen live by Lua while the ClientHello is read, in the
catch-all server, and other servers have no TLS context of their own. A server's
ssl_verify_client only takes effect when nginx switches the handshake to that server's context
(by SNI), which it does only for a server with its own ssl_certificate. So a host with client
certificates gets one: its certificate (or the default one) written under --config-dir/auth,
with the CA bundle of auth-tls-secret (key ``ca.crt``). A certificate change then reloads nginx
for that host (the files are named by content), where other hosts' are live data.

Upstream gets ingress-nginx's headers: ssl-client-verify, ssl-client-subject-dn,
ssl-client-issuer-dn, and ssl-client-cert (URL-encoded PEM) with
auth-tls-pass-certificate-to-upstream. auth-tls-match-cn ("CN=<regex>") is matched against the
whole CN of the subject, anchored at both ends (ingress-nginx matches the regex anywhere in the
subject DN, so "CN=a" also lets in "CN=ab" or "O=CN=a"): a certificate whose CN does not match
gets a 403.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ingress.annotations import url
from ingress.features import SERVER, Context, Feature, SideFile, parse_fields, same_namespace, secret_ref
from ingress.validate import regex
from kubewatch import Secret

VERIFY = ("on", "off", "optional", "optional_no_ca")
# The first CN of $ssl_client_s_dn (RFC 2253: "CN=a,O=b", a "," in a value escaped as "\,"),
# whole: attributes are skipped pair by pair, so an escaped "\,CN=" inside another value is no CN.
CN_MAP_REGEX = r"~^(?:(?:[^,\\]|\\.)*,)*?CN=(?<portolan_cn>(?:[^,\\]|\\.)*)(?:,|$)"


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """auth-tls-*: the CA Secret and how clients are verified; resolved: the CA file, or a denial."""

    group: ClassVar[str] = "client_tls"
    secret: str
    secret_namespace: str | None = None
    verify: str = "on"
    depth: int = 1
    error_page: str | None = None
    pass_certificate: bool = False
    match_cn: str | None = None  # the regex after "CN="
    ca: SideFile | None = None  # resolved
    denied: str = ""  # resolved: the host's paths answer 503

    @property
    def files(self) -> tuple[SideFile, ...]:
        return (self.ca,) if self.ca is not None else ()

    @property
    def cn_regex(self) -> str:
        assert self.match_cn is not None
        return f"^(?:{self.match_cn})\\z"

    @property
    def upstream_headers(self) -> tuple[tuple[str, str], ...]:
        if self.denied:
            return ()
        cert = (("ssl-client-cert", "$ssl_client_escaped_cert"),) if self.pass_certificate else ()
        return (*cert, ("ssl-client-verify", "$ssl_client_verify"), ("ssl-client-subject-dn", "$ssl_client_s_dn"),
                ("ssl-client-issuer-dn", "$ssl_client_i_dn"))  # fmt: skip


def ca_bundle(data: bytes) -> bytes:
    """The certificates of a PEM bundle, parsed and written again (nothing else of the Secret
    reaches the file); ValueError when there is none or one does not parse."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    certs = x509.load_pem_x509_certificates(data)  # ValueError when none, or one is broken
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _match_cn(text: str) -> str:
    if not text.startswith("CN="):
        raise ValueError("does not start with CN=")
    return regex(text[3:], "auth-tls-match-cn")


def depth(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 100:
        raise ValueError("not a depth in 1..100")
    return int(text)


def _verify(text: str) -> str:
    if text not in VERIFY:
        raise ValueError(f"not one of {', '.join(VERIFY)}")
    return text


def _pass(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError("not true or false")
    return text.lower() == "true"


_FIELDS: dict[str, tuple[str, Any]] = {
    "auth-tls-verify-client": ("verify", _verify),
    "auth-tls-verify-depth": ("depth", depth),
    "auth-tls-error-page": ("error_page", url),
    "auth-tls-pass-certificate-to-upstream": ("pass_certificate", _pass),
    "auth-tls-match-cn": ("match_cn", _match_cn),
}


def parse(raw: Mapping[str, str], notes: list[str]) -> ClientTLS | None:
    if "auth-tls-secret" not in raw:
        for key in sorted(raw):
            notes.append(f"annotation {key} ignored: no auth-tls-secret")
        return None
    values = parse_fields(raw, {"auth-tls-secret": ("ref", secret_ref), **_FIELDS})
    values["secret_namespace"], values["secret"] = values.pop("ref")
    return ClientTLS(**values)


def resolve(value: ClientTLS | None, ctx: Context) -> ClientTLS | None:
    if value is None:
        return None
    secret, denied = same_namespace("Secret", value.secret_namespace, value.secret, ctx, "ca.crt")
    if isinstance(secret, Secret):
        try:
            return replace(value, ca=SideFile.of("ca.pem", ca_bundle(secret.data["ca.crt"])))
        except ValueError as exc:
            denied = f"Secret {ctx.namespace}/{value.secret}: ca.crt: {exc}"
    ctx.notes.append(f"{ctx.ingress}: auth-tls-secret: {denied}: 503")
    return replace(value, denied=denied)


FEATURE = Feature(
    group="client_tls",
    annotations=("auth-tls-secret", "auth-tls-verify-client", "auth-tls-verify-depth", "auth-tls-error-page",
                 "auth-tls-pass-certificate-to-upstream", "auth-tls-match-cn"),
    scope=SERVER,
    risk="Medium",
    differs="auth-tls-match-cn must match the subject's whole CN (anchored), not anywhere in the DN; the host's "
    "certificate is then a file, so renewing it reloads nginx; a missing or broken CA Secret answers 503; with "
    "verify on, a plain-HTTP request (no TLS section, no redirect) answers 403 instead of passing unverified",
    parse=parse,
    resolve=resolve,
)
