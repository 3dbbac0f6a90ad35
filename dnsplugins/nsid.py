"""nsid: tell clients that ask which server answered them (EDNS0 NSID, RFC 5001).

## Syntax

```
nsid [DATA...]
```

* **DATA** is the identifier, its words joined by single spaces; default the machine's host name
  (`localhost` if it has none).

A query whose OPT record carries the NSID option (`dig +nsid`) gets the identifier as the NSID option
of the reply's OPT record, whoever in the chain answered. Other queries are untouched. This plugin
can only be used once per server block.

The block does not answer from stored wire answers (the hot path) while `nsid` is in it: the hot path
writes an OPT record without options, and it does not read the query's options to tell who asked.

## Examples

```corefile
example.org {
    nsid Use The Force
    whoami
}
```

```corefile
. {
    nsid
    forward . 127.0.0.1:5301
}
```
"""

from __future__ import annotations

import socket
import struct

from dnslib import DNSRecord

from corefile import Dispenser
from dnsserver.plugin import Next, Plugin, SetupContext
from dnsserver.request import Request
from dnsserver.wire.consts import TYPE_OPT
from dnsserver.wire.names import name_end

OPTION_NSID = 3  # the EDNS0 option code of NSID (RFC 5001)
_U16 = struct.Struct("!H")
_COUNTS = struct.Struct("!HHHH")


def default_id() -> str:
    """The host's name, as CoreDNS defaults to; `localhost` when it has none."""
    try:
        return socket.gethostname() or "localhost"
    except OSError:
        return "localhost"


def edns_option_codes(wire: bytes) -> list[int]:
    """The option codes in the OPT record of the message `wire`, read from its bytes: dnslib's parser
    drops options without data, and an NSID request (`dig +nsid`) is exactly that."""
    if len(wire) < 12:
        return []
    qd, an, ns, ar = _COUNTS.unpack_from(wire, 4)
    i = 12
    for _ in range(qd):
        i = name_end(wire, i)
        if i < 0:
            return []
        i += 4
    for n in range(an + ns + ar):
        i = name_end(wire, i)
        if i < 0 or i + 10 > len(wire):
            return []
        rtype, rdlen = _U16.unpack_from(wire, i)[0], _U16.unpack_from(wire, i + 8)[0]
        start, i = i + 10, i + 10 + rdlen
        if rtype == TYPE_OPT and n >= an + ns:
            codes, j = [], start
            while j + 4 <= min(i, len(wire)):
                code, olen = struct.unpack_from("!HH", wire, j)
                codes.append(code)
                j += 4 + olen
            return codes
    return []


class Nsid(Plugin):
    """`nsid`: adds the NSID option to replies of queries that carry it."""

    name = "nsid"

    def __init__(self, data: str) -> None:
        self.data = data
        raw = data.encode()
        self.option = struct.pack("!HH", OPTION_NSID, len(raw)) + raw  # built once: every reply sends the same

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        if req.edns and OPTION_NSID in edns_option_codes(req.wire):
            req.opt_options += self.option
        return await next(req)


def setup(d: Dispenser, ctx: SetupContext) -> Nsid:
    data = default_id()
    while d.next():
        args = d.remaining_args()
        if args:
            data = " ".join(args)
    return Nsid(data)
