"""log: write one line per query, CoreDNS style, to the process log.

## Syntax

```
log [NAMES...] [FORMAT] {
    class CLASSES...
}
```

* **NAMES** are the names (and everything below them) whose queries are logged; default `.`.
* **FORMAT** is the line to write, with placeholders (below). `{common}` (the default) is the Common
  Log Format; `{combined}` is the Common Log Format followed by the query's opcode in quotes. The last
  argument is taken as FORMAT when it contains a `{`, so `log {combined}` on its own is a format.
* `class` keeps only replies of the given classes: `success` (NOERROR with data, delegations),
  `denial` (NXDOMAIN with an SOA, NODATA), `error` (SERVFAIL, REFUSED, NOTIMP, FORMERR, an NXDOMAIN
  without SOA, ...) or `all` (the default). Several `class` lines add up.

`log` may be used several times in a block. A query is handled by the first rule (in Corefile order)
whose NAMES cover it; that rule's classes alone decide whether it is written.

Lines are written at INFO level to the `portolan` logger, prefixed with `[INFO] `. The Common Log
Format is (on one line)

```
{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}"
{rcode} {>rflags} {rsize} {duration}
```

for example

```
[INFO] 127.0.0.1:52100 - 4321 "A IN example.org. udp 29 false 512" NOERROR qr,aa,rd 45 0.000123s
```

Placeholders: `{type}` qtype, `{name}` qname (lower-case), `{class}` qclass, `{proto}` udp or tcp,
`{remote}` client IP (IPv6 in brackets), `{port}` client port, `{local}` server IP, `{size}` query size
in bytes, `{>id}` query ID, `{>opcode}` query opcode, `{>do}` DNSSEC OK bit, `{>bufsize}` the client's
buffer size (EDNS0 size, at least 512; 65535 on TCP), `{rcode}` reply rcode, `{>rflags}` reply flags
set (qr,aa,tc,rd,ra,z,ad,cd), `{rsize}` reply size in bytes as sent, `{duration}` time from the query
reaching `log` until the reply was written, in seconds. `{/LABEL}` is a metadata value, `-` when
unset; `log` itself provides `{/log/type}` (NOERROR, NXDOMAIN, NODATA, DELEGATION, SERVERERROR,
META, UPDATE, OTHERERROR) and `{/log/class}` (success, denial, error). Anything else in braces is
written as it is.

## Examples

```corefile
. {
    log
    whoami
}
```

Only denials and errors under example.org, in the Combined Log Format:

```corefile
. {
    log example.org {combined} {
        class denial error
    }
    whoami
}
```

A custom format:

```corefile
. {
    log . "{proto} Request: {name} {type} {>id}"
    whoami
}
```
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeAlias

from dnslib import DNSRecord

from corefile import Dispenser, normalize_zone
from dnsserver.logs import core_log
from dnsserver.plugin import Plugin, SetupContext
from dnsserver.wire import RCODE_NAMES
from dnsserver.wire.consts import (
    OPCODE_NOTIFY,
    OPCODE_UPDATE,
    TYPE_A,
    TYPE_AAAA,
    TYPE_AXFR,
    TYPE_IXFR,
    TYPE_NS,
    TYPE_SOA,
)
from dnsserver.wire.views import QueryView, WireReply

# The query log is the server's own: its lines carry "[INFO] " alone, as CoreDNS writes them.
log = core_log

EMPTY = "-"
COMMON_FORMAT = ('{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" '
                 '{rcode} {>rflags} {rsize} {duration}')
COMBINED_FORMAT = COMMON_FORMAT + ' "{>opcode}"'
CLASSES = ("all", "success", "denial", "error")

# Class names as CoreDNS (miekg/dns) prints them; anything else is CLASSnnn.
_CLASS_NAMES = {1: "IN", 2: "CS", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}

# Reply types (CoreDNS's response.Type names) and the class each one falls in.
_TYPE_CLASS = {
    "NOERROR": "success", "DELEGATION": "success",
    "NXDOMAIN": "denial", "NODATA": "denial",
}


# A reply as the log reads it: parsed, or a view of the wire bytes for an answer sent without a Request.
Reply: TypeAlias = DNSRecord | WireReply | None


def reply_type(qtype: int, reply: Reply) -> str:
    """What kind of reply this is, by the rules CoreDNS's response.Typify uses.

    (Typify also calls a DO reply with an expired RRSIG an error; nothing here signs, so that check
    is left out.)
    """
    if reply is None:
        return "OTHERERROR"
    h = reply.header
    if h.opcode == OPCODE_UPDATE:
        return "UPDATE"
    if h.opcode == OPCODE_NOTIFY or qtype in (TYPE_AXFR, TYPE_IXFR):
        return "META"
    rcode = h.rcode
    if reply.rr and rcode == 0:
        # An address query answered with only a CNAME chain did not get what it asked for.
        if qtype in (TYPE_A, TYPE_AAAA) and not any(r.rtype == qtype for r in reply.rr):
            return "NODATA"
        return "NOERROR"
    return _by_authority(rcode, [r.rtype for r in reply.auth])


def _by_authority(rcode: int, auth_types: list[int]) -> str:
    """reply_type for a reply without answers: told by its rcode and its authority section's types."""
    soa, ns = TYPE_SOA in auth_types, TYPE_NS in auth_types
    if soa and rcode == 0:
        return "NODATA"
    if soa and rcode == 3:
        return "NXDOMAIN"
    if rcode in (2, 4):
        return "SERVERERROR"
    if ns and rcode == 0:
        return "DELEGATION"
    if rcode == 0:
        return "NOERROR"
    return "OTHERERROR"


def reply_class(rtype: str) -> str:
    return _TYPE_CLASS.get(rtype, "error")


def go_seconds(seconds: float) -> str:
    """Seconds the way CoreDNS prints {duration}: Go's shortest float, never in exponent form, plus "s"."""
    ns = max(0, int(seconds * 1e9))  # Go measures whole nanoseconds
    secs, rest = divmod(ns, 1_000_000_000)
    text = repr(secs + rest / 1e9)
    if "e" in text:
        text = format(Decimal(text), "f")
    if text.endswith(".0"):
        text = text[:-2]
    return text + "s"


def _bracket(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _flags(reply: Reply) -> str:
    if reply is None:
        return EMPTY
    h = reply.header
    out = []
    for flag, on in (("qr", h.qr), ("aa", h.aa), ("tc", h.tc), ("rd", h.rd), ("ra", h.ra), ("z", h.z),
                     ("ad", h.ad), ("cd", h.cd)):
        if on:
            out.append(flag)
    return ",".join(out)


def _rcode(reply: Reply) -> str:
    if reply is None:
        return EMPTY
    rc = reply.header.rcode
    return RCODE_NAMES.get(rc, str(rc))


# A placeholder's value from (request, reply, reply size, duration in seconds).
Getter = Callable[[QueryView, Reply, int, float], str]

LABELS: dict[str, Getter] = {
    "{type}": lambda q, r, n, d: q.type_name,
    "{name}": lambda q, r, n, d: q.name,
    "{class}": lambda q, r, n, d: _CLASS_NAMES.get(q.qclass, f"CLASS{q.qclass}"),
    "{proto}": lambda q, r, n, d: q.proto,
    "{size}": lambda q, r, n, d: str(q.wire_size),
    "{remote}": lambda q, r, n, d: _bracket(q.client_ip),
    "{port}": lambda q, r, n, d: str(q.client_port),
    "{local}": lambda q, r, n, d: _bracket(q.local_ip),
    "{>id}": lambda q, r, n, d: str(q.msg.header.id),
    "{>opcode}": lambda q, r, n, d: str(q.msg.header.opcode),
    "{>do}": lambda q, r, n, d: "true" if q.do else "false",
    "{>bufsize}": lambda q, r, n, d: str(q.max_size),
    "{rcode}": lambda q, r, n, d: _rcode(r),
    "{rsize}": lambda q, r, n, d: str(n),
    "{duration}": lambda q, r, n, d: go_seconds(d),
    "{>rflags}": lambda q, r, n, d: _flags(r),
}


def _metadata(label: str) -> Getter:
    if label == "log/type":
        return lambda q, r, n, d: reply_type(q.qtype, r)
    if label == "log/class":
        return lambda q, r, n, d: reply_class(reply_type(q.qtype, r))

    def get(q: QueryView, r: Reply, n: int, d: float) -> str:
        v = q.meta.get(label)
        if v is None:
            return EMPTY
        # Metadata providers may store a function so the value is only worked out when used.
        return str(v() if callable(v) else v)

    return get


def compile_format(fmt: str) -> list[str | Getter]:
    """Split a format into literal text and placeholder getters, once, at setup.

    Like CoreDNS, the scan finds each `}` and the nearest `{` before it, so "{ {type} }" is a literal
    "{ ", the type, and " }"; an unknown "{x}" stays in the line as written.
    """
    parts: list[str | Getter] = []
    literal = ""
    s = fmt
    while True:
        j = s.find("}")
        if j < 0:
            break
        i = s.rfind("{", 0, j)
        token = s[i:j + 1] if i >= 0 else ""
        getter = LABELS.get(token)
        if getter is None and token.startswith("{/"):
            getter = _metadata(token[2:-1])
        if getter is None:
            literal += s[:j + 1]
        else:
            literal += s[:i]
            if literal:
                parts.append(literal)
                literal = ""
            parts.append(getter)
        s = s[j + 1:]
    literal += s
    if literal:
        parts.append(literal)
    return parts


@dataclass
class Rule:
    """One NAME of one `log` line: the names it covers, what it writes, and for which replies."""

    scope: str
    format: str = COMMON_FORMAT
    classes: frozenset[str] = frozenset({"all"})
    parts: list[str | Getter] = field(init=False, repr=False, compare=False)
    every: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.parts = compile_format(self.format)
        self.every = "all" in self.classes

    def covers(self, name: str) -> bool:
        s = self.scope
        return s == "." or name == s or name.endswith("." + s)

    def render(self, req: QueryView, reply: Reply, size: int, duration: float) -> str:
        return "".join(p if isinstance(p, str) else p(req, reply, size, duration) for p in self.parts)

    def write(self, req: QueryView, reply: Reply, size: int, duration: float) -> None:
        """Log the line for this exchange if the rule's classes want it."""
        if not log.isEnabledFor(logging.INFO):
            return  # nothing would be shown: skip the classifying and formatting too
        if self.every or reply_class(reply_type(req.qtype, reply)) in self.classes:
            log.info("%s", self.render(req, reply, size, duration))


class Log(Plugin):
    """`log`: writes a line per query answered, for the names and classes of reply its rules cover."""

    name = "log"
    # Every answer of the block, on every path, is told to `observe` by the server, with a view of the
    # query and of the reply's bytes as sent: nothing to do in the chain, which may skip it.
    fast_safe = True

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    def observe(self, req: QueryView, reply: WireReply, size: int, duration: float) -> None:
        """Write the line of the first rule whose names cover the query, if its classes want this reply."""
        name = req.name
        for rule in self.rules:
            if rule.covers(name):
                rule.write(req, reply, size, duration)
                return


def parse(d: Dispenser) -> list[Rule]:
    """Every `log` line of a block, in order, as rules (one per NAME)."""
    rules: list[Rule] = []
    while d.next():
        args = d.remaining_args()
        fmt = COMMON_FORMAT
        if args and "{" in args[-1]:
            fmt = {"{common}": COMMON_FORMAT, "{combined}": COMBINED_FORMAT}.get(args[-1], args[-1])
            args = args[:-1]
        names = [normalize_zone(a) for a in args] or ["."]
        classes: set[str] = set()
        while d.next_block():
            if d.val() != "class":
                raise d.unknown_property()
            wanted = d.remaining_args()
            if not wanted:
                raise d.arg_err()
            for c in wanted:
                if c not in CLASSES:
                    raise d.err(f"invalid Class: {c}")
                classes.add(c)
        cls = frozenset(classes or {"all"})
        rules.extend(Rule(n, fmt, cls) for n in names)
    return rules


def setup(d: Dispenser, ctx: SetupContext) -> Log:
    return Log(parse(d))
