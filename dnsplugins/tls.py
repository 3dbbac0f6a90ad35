"""tls: the certificate for a `tls://` server block, which then answers DNS over TLS (RFC 7858).

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

## Examples

```corefile
tls://.:853 {
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
    """`tls`: the certificate and key of the block's DNS-over-TLS listeners (config only)."""

    name = "tls"
    in_chain = False

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context

    def listener_options(self, opts: ListenOptions) -> None:
        opts.tls = self.context


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
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        if ca is not None:
            context.load_verify_locations(ca)
    except (ssl.SSLError, OSError) as e:
        raise d.err(f"could not load certificate: {e}") from None
    context.verify_mode = CLIENT_AUTH[auth] if ca is not None or auth == "nocert" else ssl.CERT_NONE
    return Tls(context)
