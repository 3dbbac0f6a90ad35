"""header: set or clear header flags of queries (for the plugins after it) and of replies.

## Syntax

```
header {
    SELECTOR ACTION FLAGS...
    SELECTOR ACTION FLAGS...
}
```

* **SELECTOR** is `query` (the query as the plugins after `header` see it) or `response` (the reply).
* **ACTION** is `set` or `clear`.
* **FLAGS** are one or more of `aa` (authoritative answer), `ra` (recursion available) and `rd`
  (recursion desired).

Rules apply in the order written, so a later rule wins over an earlier one for the same flag. At least
one rule is required. Selector, action and flag names are case-insensitive.

`header` runs after `cache` in the chain (CoreDNS's order). A cache in the block stores the reply as
`header` left it, so its stored wire answers (the hot path) keep `ra` as set or cleared here; like
CoreDNS's cache, a cached answer always has `aa` set and the client's own `rd`. Without a cache the
block does not use a later plugin's stored answers (hosts, kubernetes), which `header` never saw.

## Examples

```corefile
. {
    header {
        response set ra
    }
    whoami
}
```

```corefile
. {
    header {
        response set ra aa
        response clear rd
        query set rd
    }
    whoami
}
```
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from dnslib import DNSHeader, DNSRecord

from corefile import Dispenser
from dnsserver.plugin import Next, Plugin, SetupContext
from dnsserver.request import Request
from dnsserver.wire.consts import AA, RA, RD

FLAGS = ("aa", "ra", "rd")
WIRE_BITS = {"aa": AA, "ra": RA, "rd": RD}


@dataclass(frozen=True)
class Rule:
    """Set (`state` True) or clear one header flag."""

    flag: str
    state: bool


def apply(header: DNSHeader, rules: list[Rule]) -> None:
    for r in rules:
        setattr(header, r.flag, int(r.state))


def wire_flags(wire: bytes, rules: list[Rule]) -> bytes:
    """The two flag bytes of the message `wire` with `rules` applied."""
    flags = (wire[2] << 8) | wire[3]
    for r in rules:
        bit = WIRE_BITS[r.flag]
        flags = flags | bit if r.state else flags & ~bit
    return bytes(((flags >> 8) & 0xFF, flags & 0xFF))


def parse_rules(action: str, flags: list[str]) -> list[Rule]:
    """The rules of one line; ValueError (CoreDNS's wording) for a bad action or flag."""
    if not action:
        raise ValueError("no flag action provided")
    if not flags:
        raise ValueError("invalid length for flags, at least one should be provided")
    act = action.lower()
    if act not in ("set", "clear"):
        raise ValueError(f"unknown flag action={act}, should be set or clear")
    rules = []
    for f in flags:
        flag = f.lower()
        if flag not in FLAGS:
            raise ValueError(f"unknown/unsupported flag={flag}")
        rules.append(Rule(flag, act == "set"))
    return rules


class Header(Plugin):
    """`header`: applies flag rules to queries before the rest of the chain and to its replies."""

    name = "header"

    def __init__(self, query: list[Rule], response: list[Rule]) -> None:
        self.query = query
        self.response = response

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        if self.query:
            # Both forms of the query: later plugins read the parsed header (req.reply copies RD) or the
            # bytes (forward relays them, stores key and assemble on them).
            apply(req.msg.header, self.query)
            req.wire = req.wire[:2] + wire_flags(req.wire, self.query) + req.wire[4:]
        reply = await next(req)
        if reply is not None and self.response:
            # A copy of the header: a store may still hold the reply it handed us (hosts' memo).
            reply.header = copy.copy(reply.header)
            apply(reply.header, self.response)
        return reply


def setup(d: Dispenser, ctx: SetupContext) -> Header:
    query: list[Rule] = []
    response: list[Rule] = []
    while d.next():
        if d.next_arg():
            raise d.arg_err()
        while d.next_block():
            selector = d.val().lower()
            if selector not in ("query", "response"):
                raise d.err(f"setting up rule: invalid selector={selector} should be query or response")
            args = d.remaining_args()
            try:
                rules = parse_rules(args[0] if args else "", args[1:])
            except ValueError as e:
                raise d.err(f"setting up rule: {e}") from e
            (response if selector == "response" else query).extend(rules)
    if not query and not response:
        raise d.arg_err()
    return Header(query, response)
