"""Self-signed certificates for DNS-over-TLS tests, made with the openssl command line."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_cert(directory: Path, name: str = "dns.test") -> tuple[Path, Path]:
    """(cert.pem, key.pem) for `name` and 127.0.0.1, valid for a day; the cert is its own CA."""
    cert, key = directory / f"{name}.crt.pem", directory / f"{name}.key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key
