"""acl: allow, block, filter or drop queries by the client's address and the query type.

## Syntax

```
acl [ZONES...] {
    ACTION [type QTYPE...] [net SOURCE...]
}
```

* **ZONES** are the zones the policies apply to; default the server block's zones. A query for a
  name outside them passes on untouched.
* **ACTION** is `allow`, `block`, `filter` or `drop`. Policies are tried top to bottom and the first
  that matches the query decides: `allow` passes it on to the next plugin, `block` answers REFUSED,
  `filter` answers NOERROR with no records, `drop` sends nothing at all. A query no policy matches is
  allowed.
* **QTYPE** are query types (`A`, `AAAA`, ..., written in capitals as CoreDNS spells them); `*`, or
  no `type` section, matches every type.
* **SOURCE** are networks in CIDR notation or single addresses (`/32`, `/128` implied); `*`, or no
  `net` section, matches every client. The client is the source address of the query's packet: a
  resolver or NAT in between is the client here.

The directive may be written several times in a block; each is a rule with its own zones, and the
rules are tried in order. A policy of a rule that allows the query ends the evaluation (later rules
are not tried); a rule none of whose policies matches leaves the query to the next rule.

A blocked query gets REFUSED with the extended DNS error (RFC 8914) 15 "Blocked", a filtered one
NOERROR with 17 "Filtered", both in the OPT record, as CoreDNS sends them; a client that sent no OPT
gets none (RFC 6891). Neither answer has AA set. An address that cannot be read is blocked.

Every answer of a block that loads acl depends on the client, so acl takes its block off the hot path
(stored wire answers of cache, hosts or kubernetes) and the relay path (forward): every query of the
block runs the chain from acl on, and a blocked client is never answered from an answer stored for an
allowed one.

Metrics: `coredns_acl_blocked_requests_total{server,zone,view}`,
`coredns_acl_filtered_requests_total{server,zone,view}`, `coredns_acl_dropped_requests_total{server,zone,view}`
and `coredns_acl_allowed_requests_total{server,view}`.

## Examples

Block A queries from 192.168.0.0/16, filter AAAA queries from one host:

```corefile
. {
    acl {
        block type A net 192.168.0.0/16
        filter type AAAA net 10.0.0.5
    }
    whoami
}
```

Allow only two networks, and only for `example.org`:

```corefile
example.org {
    acl {
        allow net 192.168.0.0/24 192.168.1.0/24
        block
    }
    whoami
}
```

Drop every query for `a.example.org` from 192.168.1.0/24, without a reply:

```corefile
example.org {
    acl a.example.org {
        drop net 192.168.1.0/24
    }
    whoami
}
```
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from dnslib import QTYPE, DNSRecord
from prometheus_client import Counter

from corefile import Dispenser
from dnsserver.metrics import REGISTRY
from dnsserver.plugin import Next, Plugin, SetupContext, match_zone, plugin_zones
from dnsserver.request import Request
from dnsserver.respond import extended_error, no_reply
from dnsserver.wire.consts import NOERROR, REFUSED
from dnsserver.wire.views import meta_value

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

EDE_BLOCKED, EDE_FILTERED = 15, 17  # RFC 8914 INFO-CODEs, as CoreDNS sends them
ALL_NETS: tuple[Network, ...] = (ipaddress.IPv4Network("0.0.0.0/0"), ipaddress.IPv6Network("::/0"))

BLOCKED = Counter(
    "coredns_acl_blocked_requests",
    "Counter of DNS requests being blocked.",
    ["server", "zone", "view"],
    registry=REGISTRY,
)
FILTERED = Counter(
    "coredns_acl_filtered_requests",
    "Counter of DNS requests being filtered.",
    ["server", "zone", "view"],
    registry=REGISTRY,
)
ALLOWED = Counter(
    "coredns_acl_allowed_requests", "Counter of DNS requests being allowed.", ["server", "view"], registry=REGISTRY
)
DROPPED = Counter(
    "coredns_acl_dropped_requests",
    "Counter of DNS requests being dropped.",
    ["server", "zone", "view"],
    registry=REGISTRY,
)


class Action(enum.Enum):
    """What a policy does with the queries it matches."""

    ALLOW = "allow"
    BLOCK = "block"
    FILTER = "filter"
    DROP = "drop"


@dataclass
class Policy:
    """One line of a rule: its action, and the query types and client networks it matches (None: all)."""

    action: Action
    qtypes: frozenset[int] | None = None
    nets: tuple[Network, ...] = ALL_NETS

    def matches(self, qtype: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        # A network of the other family never contains the address (no exception, unlike `in` on mixed
        # versions would suggest): IPv4 and IPv6 rules simply do not meet.
        return (self.qtypes is None or qtype in self.qtypes) and any(
            ip in n for n in self.nets if n.version == ip.version
        )


@dataclass
class Rule:
    """One `acl` directive: its zones and its policies in order."""

    zones: list[str]
    policies: list[Policy] = field(default_factory=list)

    def decide(self, qtype: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> Action | None:
        """The first matching policy's action, or None when none matches (an unreadable address: BLOCK)."""
        if ip is None:
            return Action.BLOCK
        for p in self.policies:
            if p.matches(qtype, ip):
                return p.action
        return None


class Acl(Plugin):
    """`acl`: the first matching policy of the first rule whose zones hold the name decides."""

    name = "acl"
    # fast_safe stays False: acl's answer depends on the client, which the hot path's stored answers and
    # the relay path's remembered routes do not look at.

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        ip = _address(req.client_ip)
        view = meta_value(req.meta, "view/name")  # the view that chose the block, if any
        for rule in self.rules:
            zone = match_zone(rule.zones, req.name)
            if zone is None:
                continue
            action = rule.decide(req.qtype, ip)
            if action is Action.ALLOW:
                break
            if action is Action.DROP:
                DROPPED.labels(req.server, zone, view).inc()
                return no_reply(req)
            if action is Action.BLOCK:
                BLOCKED.labels(req.server, zone, view).inc()
                reply = req.reply(REFUSED)
                extended_error(reply, EDE_BLOCKED)
                return reply
            if action is Action.FILTER:
                FILTERED.labels(req.server, zone, view).inc()
                reply = req.reply(NOERROR)
                extended_error(reply, EDE_FILTERED)
                return reply
        ALLOWED.labels(req.server, view).inc()
        return await next(req)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # a scoped IPv6 address: its zone index dropped
    except ValueError:
        return None


def _keyword(token: str) -> bool:
    return token.lower() in ("type", "net")


def _policy(d: Dispenser) -> Policy:
    word = d.val()
    try:
        policy = Policy(Action(word.lower()))
    except ValueError:
        raise d.err(f"unexpected token \"{word}\"; expect 'allow', 'block', 'filter' or 'drop'") from None
    tokens = d.remaining_args()
    typed = netted = False  # until a section of its kind, a policy matches every type, every client
    while tokens:
        section = tokens[0].lower()
        if not _keyword(section):
            raise d.err(f"unexpected token \"{tokens[0]}\"; expect 'type | net'")
        i = 1
        while i < len(tokens) and not _keyword(tokens[i]):
            i += 1
        values, tokens = tokens[1:i], tokens[i:]
        if not values:
            raise d.err(f'no token specified in "{section}" section')
        if section == "type":
            policy.qtypes = _qtypes(d, values, policy.qtypes if typed else frozenset())
            typed = True
        else:
            policy.nets = _nets(d, values, policy.nets if netted else ())
            netted = True
    return policy


def _qtypes(d: Dispenser, values: list[str], before: frozenset[int] | None) -> frozenset[int] | None:
    """A `type` section added to what earlier ones matched (None: every type, `*`)."""
    if before is None:
        return None
    types = set(before)
    for v in values:
        if v == "*":
            return None  # CoreDNS reads no further in this section
        code = QTYPE.reverse.get(v)
        if code is None or v != v.upper():
            raise d.err(f'unexpected token "{v}"; expect legal QTYPE')
        types.add(int(code))
    return frozenset(types)


def _nets(d: Dispenser, values: list[str], before: tuple[Network, ...]) -> tuple[Network, ...]:
    """A `net` section added to what earlier ones matched (ALL_NETS: every client, `*`)."""
    if before is ALL_NETS:
        return ALL_NETS
    nets = list(before)
    for v in values:
        if v == "*":
            return ALL_NETS
        text = v if "/" in v else v + ("/128" if ":" in v else "/32")
        try:
            nets.append(ipaddress.ip_network(text, strict=False))  # host bits allowed, as Go's ParseCIDR
        except ValueError:
            raise d.err(f'illegal CIDR notation "{text}"') from None
    return tuple(nets)


def parse(d: Dispenser, ctx: SetupContext) -> list[Rule]:
    rules: list[Rule] = []
    while d.next():
        rule = Rule(plugin_zones(d.remaining_args(), ctx))
        while d.next_block():
            rule.policies.append(_policy(d))
        rules.append(rule)
    return rules


def setup(d: Dispenser, ctx: SetupContext) -> Acl:
    return Acl(parse(d, ctx))
