"""local: answer the loopback names (localhost, 127.in-addr.arpa and friends) without passing them on.

## Syntax

```
local
local {
    localhost_prefix on|off
}
```

Names in the zones `localhost.`, `0.in-addr.arpa.`, `127.in-addr.arpa.` and `255.in-addr.arpa.`, every
name under `.localhost.` and, while `localhost_prefix` is `on` (the default, as in CoreDNS), every
name that starts with `localhost.` (`localhost.example.org.`) get an answer here and never reach a later
plugin or an upstream:

* `localhost.`, its subdomains and the `localhost.<domain>` names: A `127.0.0.1` and AAAA `::1`; other
  types get NOERROR with no answer and a SOA for the name in the authority section.
* the apex of each zone: SOA (`localhost. root.localhost. 1 0 0 0 604800`) and NS (`localhost.`);
  A and AAAA of the in-addr.arpa apexes, and other types, get no data with that SOA.
* `1.0.0.127.in-addr.arpa.`: PTR `localhost.`; other types no data.
* any other name in these zones: NXDOMAIN with the zone's SOA.

Every record has TTL 604800; AA is not set (CoreDNS's replies do not set it either). `ip6.arpa`
names are not intercepted. `localhost_prefix off` keeps only RFC 6761's names (`localhost.` and under
it).

`coredns_local_localhost_requests_total` counts the queries for names under `localhost.` and (with the
prefix on) `localhost.<domain>` names, not `localhost.` itself; with `debug`, each is logged with
the client's address.

The block does not answer from a later plugin's stored wire answers (the hot path) while `local` is
in it: a store (hosts with a `localhost` line, cache) could otherwise answer a name `local` owns.

## Examples

```corefile
. {
    local
    forward . 127.0.0.1:5301
}
```

```corefile
. {
    local {
        localhost_prefix off
    }
    whoami
}
```
"""

from __future__ import annotations

from dnslib import AAAA, NS, PTR, QTYPE, RR, SOA, A, DNSRecord
from prometheus_client import Counter

from corefile import Dispenser
from dnsserver.logs import plugin_log
from dnsserver.metrics import REGISTRY
from dnsserver.plugin import Next, Plugin, SetupContext, match_zone
from dnsserver.request import Request
from dnsserver.wire.consts import NXDOMAIN

log = plugin_log("local")

TTL = 604800
# No server label, as CoreDNS's: which clients ask is the interesting part, and the debug log has them.
LOCALHOST_REQUESTS = Counter(
    "coredns_local_localhost_requests", "Counter of special localhost subdomain requests.", registry=REGISTRY
)
ZONES = ["localhost.", "0.in-addr.arpa.", "127.in-addr.arpa.", "255.in-addr.arpa."]
LOOPBACK_PTR = "1.0.0.127.in-addr.arpa."


def _soa(owner: str) -> RR:
    return RR(owner, QTYPE.SOA, ttl=TTL, rdata=SOA("localhost.", "root.localhost.", (1, 0, 0, 0, TTL)))


class Local(Plugin):
    """`local`: answers the loopback zones itself."""

    name = "local"
    # fast_safe stays False: a store behind it may hold an answer for a name it owns (see the docstring).

    def __init__(self, localhost_prefix: bool = True) -> None:
        self.localhost_prefix = localhost_prefix

    def _is_localhost_name(self, name: str) -> bool:
        """A name below `localhost.`, or (with the prefix on) `localhost.<domain>`."""
        if name == "localhost.":
            return False
        return name.endswith(".localhost.") or (self.localhost_prefix and name.startswith("localhost."))

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        name = req.name
        if self._is_localhost_name(name):
            log.debug("Intercepting localhost query for %r %s, from %s", req.qname, req.type_name, req.client_ip)
            LOCALHOST_REQUESTS.inc()
            return self._loopback(req, req.qname)
        zone = match_zone(ZONES, name)
        if zone is None:
            return await next(req)
        if name == "localhost.":
            return self._loopback(req, req.qname, apex=True)
        reply = req.reply()
        # The zone as the client spelled it: the SOA owner keeps the question's case.
        zone_spelled = req.qname[len(req.qname) - len(zone) :]
        if name == zone:
            if req.qtype == QTYPE.SOA:
                reply.add_answer(_soa(req.qname))
            elif req.qtype == QTYPE.NS:
                reply.add_answer(RR(req.qname, QTYPE.NS, ttl=TTL, rdata=NS("localhost.")))
            else:
                reply.add_auth(_soa(req.qname))
            return reply
        if name == LOOPBACK_PTR:
            if req.qtype == QTYPE.PTR:
                reply.add_answer(RR(req.qname, QTYPE.PTR, ttl=TTL, rdata=PTR("localhost.")))
            else:
                reply.add_auth(_soa(zone_spelled))
            return reply
        reply.header.rcode = NXDOMAIN
        reply.add_auth(_soa(zone_spelled))
        return reply

    @staticmethod
    def _loopback(req: Request, owner: str, apex: bool = False) -> DNSRecord:
        """The loopback addresses for `owner`; at the `localhost.` apex also its SOA and NS."""
        reply = req.reply()
        if req.qtype == QTYPE.A:
            reply.add_answer(RR(owner, QTYPE.A, ttl=TTL, rdata=A("127.0.0.1")))
        elif req.qtype == QTYPE.AAAA:
            reply.add_answer(RR(owner, QTYPE.AAAA, ttl=TTL, rdata=AAAA("::1")))
        elif apex and req.qtype == QTYPE.SOA:
            reply.add_answer(_soa(owner))
        elif apex and req.qtype == QTYPE.NS:
            reply.add_answer(RR(owner, QTYPE.NS, ttl=TTL, rdata=NS("localhost.")))
        else:
            reply.add_auth(_soa(owner))
        return reply


def setup(d: Dispenser, ctx: SetupContext) -> Local:
    prefix = True
    while d.next():
        if d.next_arg():
            raise d.arg_err()
        while d.next_block():
            if d.val() != "localhost_prefix":
                raise d.unknown_property()
            args = d.remaining_args()
            if len(args) != 1:
                raise d.arg_err()
            if args[0] not in ("on", "off"):
                raise d.err(f"localhost_prefix expects 'on' or 'off', got \"{args[0]}\"")
            prefix = args[0] == "on"
    return Local(prefix)
