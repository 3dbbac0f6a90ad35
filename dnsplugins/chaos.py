"""chaos: answer CH-class TXT queries about the server (version.bind and friends).

## Syntax

```
chaos [VERSION] [AUTHORS...]
```

* **VERSION** is the string returned for `version.bind` and `version.server`; default `portolan-<version>`.
* **AUTHORS** are returned, one TXT record each in random order, for `authors.bind`.

`hostname.bind` and `id.server` return the machine's host name. Every answer has TTL 0. Other names,
other classes and other types go to the next plugin. Loading `chaos` lets the server block accept
non-IN classes, which it otherwise refuses.

## Examples

```corefile
. {
    chaos Portolan-001 info@example.org
}
```
"""

from __future__ import annotations

import random
import socket

from dnslib import CLASS, QTYPE, RR, TXT, DNSRecord

from corefile import Dispenser
from dnsserver.plugin import Next, Plugin, SetupContext
from dnsserver.request import Request
from portolan import __version__

DEFAULT_AUTHORS = ["The Portolan authors"]


class Chaos(Plugin):
    """`chaos`: answers CH-class TXT queries for the server's version and authors."""

    name = "chaos"
    any_class = True  # CH-class queries must reach it
    fast_safe = True  # only CH-class queries concern it; the hot path serves IN only

    def __init__(self, version: str, authors: list[str]) -> None:
        self.version = version
        self.authors = authors

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        if req.qclass != CLASS.CH or req.qtype != QTYPE.TXT:
            return await next(req)
        if req.name in ("version.bind.", "version.server."):
            texts = [self.version]
        elif req.name == "authors.bind.":
            texts = random.sample(self.authors, len(self.authors))
        elif req.name in ("hostname.bind.", "id.server."):
            texts = [socket.gethostname()]
        else:
            return await next(req)
        reply = req.reply(aa=True)
        for t in texts:
            reply.add_answer(RR(req.qname, QTYPE.TXT, CLASS.CH, ttl=0, rdata=TXT(t)))
        return reply


def setup(d: Dispenser, ctx: SetupContext) -> Chaos:
    version, authors = f"portolan-{__version__}", list(DEFAULT_AUTHORS)
    while d.next():
        args = d.remaining_args()
        if args:
            version = args[0]
        if len(args) > 1:
            authors = args[1:]
    return Chaos(version, authors)
