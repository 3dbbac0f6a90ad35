"""tls: the certificate for a `tls://` or `https://` server block: DNS over TLS (RFC 7858), over HTTPS (RFC 8484).

## Syntax

```
tls CERT KEY [CA] {
    client_auth nocert|request|require|verify_if_given|require_and_verify
}
```

* **CERT** and **KEY** are PEM files (relative paths are relative to the Corefile's directory).
* **CA** is a PEM bundle used to verify client certificates; `client_auth` says whether a client must
  present one (default: `nocert` without CA, `require_and_verify` with it, as CoreDNS does).

A `tls://` block listens on port 853 unless its key names another, for TCP with TLS only. A `tls://`
block without this plugin is a configuration error; in a `dns://` block the plugin has no effect.

An `https://` block (port 443 unless its key names another) answers DNS over HTTPS on `/dns-query`,
GET and POST, over HTTP/2 when the client offers it (ALPN `h2`) and HTTP/1.1 otherwise. Without
this plugin an `https://` block speaks plain HTTP/1.1, as CoreDNS does, for a proxy in front of it
that ends TLS.

## Examples

```corefile
tls://.:853 {
    tls cert.pem key.pem
    whoami
}
```

The same certificate for DNS over TLS and DNS over HTTPS, on their default ports:

```corefile
tls://. https://. {
    tls cert.pem key.pem
    whoami
}
```
"""

from __future__ import annotations

import os
import ssl

from corefile import Dispenser
from dnsserver.plugin import ListenOptions, Plugin, SetupContext

CLIENT_AUTH = {
    "nocert": ssl.CERT_NONE,
    "request": ssl.CERT_OPTIONAL,
    "verify_if_given": ssl.CERT_OPTIONAL,
    "require": ssl.CERT_REQUIRED,
    "require_and_verify": ssl.CERT_REQUIRED,
}


class Tls(Plugin):
    """`tls`: the certificate and key of the block's DNS-over-TLS and DNS-over-HTTPS listeners (config only)."""

    name = "tls"
    in_chain = False

    def __init__(self, context: ssl.SSLContext, https: ssl.SSLContext | None = None) -> None:
        self.context = context
        self.https = https

    def listener_options(self, opts: ListenOptions) -> None:
        opts.tls = self.context
        opts.https_tls = self.https


# What an https:// listener offers in ALPN: HTTP/2 first, which BIND's dig requires; HTTP/1.1 for the rest.
HTTPS_ALPN = ["h2", "http/1.1"]


def setup(d: Dispenser, ctx: SetupContext) -> Tls:
    d.next()
    args = d.remaining_args()
    if len(args) not in (2, 3):
        raise d.arg_err()
    cert, key = ctx.path(args[0]), ctx.path(args[1])
    ca = ctx.path(args[2]) if len(args) == 3 else None
    auth = "require_and_verify" if ca else "nocert"
    while d.next_block():
        if d.val() != "client_auth":
            raise d.unknown_property()
        a = d.remaining_args()
        if len(a) != 1 or a[0] not in CLIENT_AUTH:
            raise d.arg_err()
        auth = a[0]
    for path in (cert, key, ca):
        if path is not None and not os.path.exists(path):
            raise d.err(f"no such file: {path}")
    try:
        context = _context(cert, key, ca, auth)
        # A context of its own for https:// listeners: ALPN set on the DoT one would offer HTTP to DoT clients.
        https = _context(cert, key, ca, auth, HTTPS_ALPN) if any(k.transport == "https" for k in ctx.keys) else None
    except (ssl.SSLError, OSError) as e:
        raise d.err(f"could not load certificate: {e}") from None
    return Tls(context, https)


def _context(cert: str, key: str, ca: str | None, auth: str, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.load_verify_locations(ca)
    context.verify_mode = CLIENT_AUTH[auth] if ca is not None or auth == "nocert" else ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    return context
