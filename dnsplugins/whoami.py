"""whoami: answer every query with the client's address and port.

## Syntax

```
whoami
```

The reply has an empty answer section, AA set, and in the additional section the client's IP as an
A or AAAA record for the query name plus `_udp.<qname>` (or `_tcp.`) SRV 0 0 <client port> `.`.
All TTLs are 0 and every record has the query's class
(a resolver rejects mixed classes). This is what `portolan dns` serves when no Corefile exists.

## Examples

```corefile
example.org {
    whoami
}
```
"""

from __future__ import annotations

from dnslib import AAAA, QTYPE, RR, SRV, A, DNSRecord

from corefile import Dispenser
from dnsserver.plugin import Next, Plugin, SetupContext
from dnsserver.request import Request


class Whoami(Plugin):
    """`whoami`: answers with the client's address and port."""

    name = "whoami"

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        reply = req.reply(aa=True)
        if req.family == 1:
            reply.add_ar(RR(req.qname, QTYPE.A, req.qclass, rdata=A(req.client_ip), ttl=0))
        else:
            reply.add_ar(RR(req.qname, QTYPE.AAAA, req.qclass, rdata=AAAA(req.client_ip), ttl=0))
        srv_name = f"_{req.proto}.{req.qname}"
        reply.add_ar(RR(srv_name, QTYPE.SRV, req.qclass, rdata=SRV(0, 0, req.client_port, "."), ttl=0))
        return reply


def setup(d: Dispenser, ctx: SetupContext) -> Whoami:
    while d.next():
        if d.next_arg():
            raise d.arg_err()
    return Whoami()
