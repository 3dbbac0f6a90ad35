"""whoami: answer every query with the client's address and port.

## Syntax

```
whoami
```

The reply has an empty answer section, AA set, and in the additional section the client's IP as an
A or AAAA record for the query name plus `_udp.<qname>` (or `_tcp.`) SRV 0 0 <client port> `.`
(left out when that name would pass 255 octets).
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

from dnslib import AAAA, QTYPE, RR, SRV, A, DNSLabel, DNSRecord

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
        # The SRV owner from the question's own labels (a label may hold a dot), and only when it fits
        # 255 octets: for a question name near the limit `_udp.` makes one no message can carry (the
        # reply failed to pack: a panic and a SERVFAIL without the question; found by fuzzing).
        srv_labels = (f"_{req.proto}".encode(), *req.msg.q.qname.label)
        if sum(len(label) + 1 for label in srv_labels) < 255:
            reply.add_ar(RR(DNSLabel(srv_labels), QTYPE.SRV, req.qclass, rdata=SRV(0, 0, req.client_port, "."),
                            ttl=0))
        return reply


def setup(d: Dispenser, ctx: SetupContext) -> Whoami:
    while d.next():
        if d.next_arg():
            raise d.arg_err()
    return Whoami()
