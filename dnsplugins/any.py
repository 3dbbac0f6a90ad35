"""any: answer ANY queries the way RFC 8482 recommends.

## Syntax

```
any
```

A query of type ANY gets one synthesised record, `<qname> 8482 IN HINFO "ANY obsoleted" "See RFC 8482"`,
instead of everything the name owns. Other queries go to the next plugin.

## Examples

```corefile
. {
    any
    whoami
}
```
"""

from __future__ import annotations

from dnslib import QTYPE, RR, DNSRecord

from corefile import Dispenser
from dnsserver.dnslib_ext import HINFO
from dnsserver.plugin import Next, Plugin, SetupContext
from dnsserver.request import Request
from dnsserver.wire.consts import TYPE_ANY


class Any(Plugin):
    """`any`: answers every ANY query with RFC 8482's short HINFO."""

    name = "any"
    fast_safe = True  # it answers ANY itself, so no ANY answer is ever stored behind it
    sees_qtypes = frozenset({TYPE_ANY})  # ...and no ANY query may be relayed past it

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        if req.qtype != TYPE_ANY:
            return await next(req)
        reply = req.reply(aa=True)
        reply.add_answer(RR(req.qname, QTYPE.HINFO, rdata=HINFO(["ANY obsoleted", "See RFC 8482"]), ttl=8482))
        return reply


def setup(d: Dispenser, ctx: SetupContext) -> Any:
    while d.next():
        if d.next_arg():
            raise d.arg_err()
    return Any()
