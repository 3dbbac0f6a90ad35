"""TLS material: certificate/key pairs from ``kubernetes.io/tls`` Secrets, the self-signed
default certificate, and the 0600 PEM files nginx reads.

A pair is parsed and re-serialised (certificate chain, then an unencrypted PKCS#8 key) before
it is written: this checks the key matches the certificate, refuses encrypted keys (nginx
would stop at start-up asking for a passphrase) and drops whatever else the Secret held.
Files are named by the SHA-256 of their content, never by namespace/name (CVE-2020-8553: a
hyphenated ``ns-name`` collides), so a config being tested never points at a file a running
config still uses with other content.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ingress.layout import Layout
from kubewatch import Secret

log = logging.getLogger(__name__)

# ingress-nginx's fake certificate names (subject and issuer alike): alerts and dashboards
# written for it look for exactly these.
DEFAULT_CN = "Kubernetes Ingress Controller Fake Certificate"
DEFAULT_O = "Acme Co"


class CertError(ValueError):
    """A Secret's certificate or key cannot be used."""


@dataclass(frozen=True, slots=True)
class CertPair:
    """A certificate chain and its key as nginx reads them (one file, named by digest), and the names it covers."""

    digest: str  # sha256 of pem: the file name
    pem: bytes  # certificate chain then key
    names: tuple[str, ...]  # DNS names the leaf certificate covers (SANs, else the CN)

    def covers(self, host: str) -> bool:
        """RFC 6125 matching: exact (case-insensitive) or a ``*.`` name for one left label."""
        host = host.lower()
        for name in self.names:
            name = name.lower()
            if name == host:
                return True
            if name.startswith("*.") and "." in host:
                if host.split(".", 1)[1] == name[2:] and not host.startswith("*."):
                    return True
                if host.startswith("*.") and host == name:
                    return True
        return False


@lru_cache(maxsize=4096)
def load_pair(crt: bytes, key: bytes) -> CertPair:
    """Parse a PEM chain and key; CertError if unusable. Cached: the same Secret is seen on
    every reconcile."""
    try:
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization
        from cryptography.x509.oid import NameOID
    except ImportError:  # pragma: no cover - nginx -t still checks the pair
        pem = crt.rstrip(b"\n") + b"\n" + key.rstrip(b"\n") + b"\n"
        return CertPair(hashlib.sha256(pem).hexdigest(), pem, ())
    if not crt or not key:
        raise CertError("tls.crt and tls.key are both required")
    try:
        chain = x509.load_pem_x509_certificates(crt)
    except ValueError as exc:
        raise CertError(f"tls.crt does not parse: {exc}") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except TypeError:
        raise CertError("tls.key is encrypted") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertError(f"tls.key does not parse: {exc}") from None
    leaf = chain[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if leaf.public_key().public_bytes(der, spki) != private.public_key().public_bytes(der, spki):
        raise CertError("tls.key does not match the certificate in tls.crt")
    names: list[str] = []
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    pem += private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return CertPair(hashlib.sha256(pem).hexdigest(), pem, tuple(names))


def self_signed(
    common_name: str = DEFAULT_CN, names: tuple[str, ...] = ("ingress.local",), days: int = 365
) -> CertPair:
    """A fresh self-signed pair (used when no certificate fits a host): subject O then CN, as
    Go writes ingress-nginx's, and the issuer the same name."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:  # pragma: no cover - exercised only where cryptography is absent
        return _self_signed_openssl(common_name, names, days)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEFAULT_O),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    crt = cert.public_bytes(serialization.Encoding.PEM)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return load_pair(crt, pem)


def _self_signed_openssl(common_name: str, names: tuple[str, ...], days: int) -> CertPair:  # pragma: no cover
    with tempfile.TemporaryDirectory() as tmp:
        crt, key = Path(tmp, "c.pem"), Path(tmp, "k.pem")
        san = ",".join(f"DNS:{n}" for n in names)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(crt), "-days", str(days), "-subj", f"/O={DEFAULT_O}/CN={common_name}",
             "-addext", f"subjectAltName={san}"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return load_pair(crt.read_bytes(), key.read_bytes())


def pair_from_secret(secret: Secret) -> CertPair:
    """The certificate and key of a kubernetes.io/tls Secret; CertError if they are missing or do not match."""
    return load_pair(secret.data.get("tls.crt", b""), secret.data.get("tls.key", b""))


class CertFiles:
    """The certificate directory: one 0600 file per pair, named by digest.

    Names come from the Layout, which is also what the templates point nginx at, and which creates
    the directory (0700: only the nginx master, our user, reads keys).
    """

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.directory = layout.certs

    def write(self, pair: CertPair) -> Path:
        target = self.layout.cert(pair.digest)
        if target.exists():
            return target
        # Created 0600 from the first byte (no chmod window), renamed in whole.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".pem")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pair.pem)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def collect(self, keep: set[str]) -> int:
        """Remove files of pairs no live or candidate configuration uses."""
        removed = 0
        for f in self.directory.glob("*.pem"):
            if f.stem not in keep:
                f.unlink(missing_ok=True)
                removed += 1
        return removed
