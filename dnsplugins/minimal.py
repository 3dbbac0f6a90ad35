"""minimal: send only the answer section of successful replies.

## Syntax

```
minimal
```

A NOERROR reply with records in its answer section loses its authority and additional records (the
server still writes its own OPT record when the client sent one). Name errors, no-data replies,
delegations (no answer, NS records in the authority section) and errors go out as they came.

`minimal` runs after `cache` in the chain (CoreDNS's order), so a cache in the block stores the
minimal reply and its stored wire answers (the hot path) are minimal too. Without a cache, the
block does not answer from a later plugin's stored answers (hosts, kubernetes): those are full.

## Examples

```corefile
example.org {
    minimal
    whoami
}
```

```corefile
example.org {
    cache
    minimal
    file db.example.org
}
```
"""

from __future__ import annotations

from dnslib import DNSRecord

from corefile import Dispenser
from dnsserver.plugin import Next, Plugin, SetupContext
from dnsserver.request import Request
from dnsserver.wire.consts import NOERROR


def minimized(reply: DNSRecord) -> DNSRecord:
    """`reply` with only its answer section when it is a successful answer; otherwise `reply` itself."""
    if reply.header.rcode != NOERROR or not reply.rr or (not reply.auth and not reply.ar):
        return reply
    # A new message: the reply's lists may be a store's own (records are shared, see dnsserver.plugin).
    # (A transfer's first message, which may carry further ones, has neither section: returned as it is.)
    return DNSRecord(reply.header, questions=list(reply.questions), rr=list(reply.rr))


class Minimal(Plugin):
    """`minimal`: strips authority and additional records from successful answers."""

    name = "minimal"

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        reply = await next(req)
        return None if reply is None else minimized(reply)


def setup(d: Dispenser, ctx: SetupContext) -> Minimal:
    while d.next():
        if d.next_arg():
            raise d.arg_err()
    return Minimal()
