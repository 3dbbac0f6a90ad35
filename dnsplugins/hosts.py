"""hosts: answer from a /etc/hosts-style file and from entries written in the Corefile.

## Syntax

```
hosts [FILE [ZONES...]] {
    [INLINE]
    ttl SECONDS
    no_reverse
    reload DURATION
    fallthrough [ZONES...]
    fallthrough_unsupported
}
```

* **FILE** is the hosts file, default `/etc/hosts`; a relative path is taken from the Corefile's
  directory. A missing file is only a warning (the inline entries are still served), and the file
  is read again whenever its modification time or size changes. If it later cannot be read, the
  entries last read from it are kept.
* **ZONES** are the zones the plugin answers for; default the server block's zones. Entries for
  names outside them are ignored.
* **INLINE** lines are hosts-file lines (`IP NAME [ALIAS...]`), allowed before any `fallthrough`
  line. A name listed both in the file and inline gets the addresses of both.
* `ttl` is the TTL of every record, 1 to 65535 seconds, default 3600.
* `no_reverse` turns off the PTR records made automatically from the entries.
* `reload` is how often the file is checked for changes, default 5s; 0 turns it off.
* `fallthrough` passes a name that has no entry to the next plugin (for the ZONES given, or all);
  without it such a name gets SERVFAIL, since there is no SOA to make an NXDOMAIN from.
* `fallthrough_unsupported` (needs `fallthrough`, and uses its zones) also passes on the query
  types this plugin does not answer, instead of a NODATA.

Names are compared case-insensitively. `*` as the leftmost label of an entry matches exactly one
label in its place (`*.apps.example.org` matches `web.apps.example.org`, not `apps.example.org` nor
`a.b.apps.example.org`); a name that has entries of its own does not use the wildcard, and wildcard
entries get no PTR record.

Only A, AAAA and PTR queries are answered, authoritatively (AA set). A name that has entries, asked
for another type (or the family it has no address of), gets an empty NOERROR without SOA. A PTR
query is answered for any address that has an entry, even outside ZONES; when there is none it
goes to the next plugin.

Metrics: `coredns_hosts_entries` (entries in the file and the Corefile) and
`coredns_hosts_reload_timestamp_seconds` (modification time of the file last read).

This plugin can only be used once per Server Block.

## Examples

```corefile
. {
    hosts
}
```

```corefile
example.org {
    hosts example.hosts example.org {
        10.0.0.1 www.example.org
        fd00::1 www.example.org
        10.0.0.2 *.apps.example.org
        ttl 60
        reload 10s
        fallthrough
    }
    whoami
}
```
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from dnslib import AAAA, PTR, RR, A, DNSRecord
from prometheus_client import Gauge

from corefile import CorefileError, Dispenser, normalize_zone
from dnsplugins.rewrite.rules import valid_name
from dnsserver.durations import parse_duration
from dnsserver.logs import plugin_log
from dnsserver.memo import AnswerMemo
from dnsserver.metrics import REGISTRY
from dnsserver.periodic import Periodic
from dnsserver.plugin import Fallthrough, Next, Plugin, SetupContext, match_zone, plugin_zones
from dnsserver.request import Request
from dnsserver.wire.consts import SERVFAIL, TYPE_A, TYPE_AAAA, TYPE_PTR
from dnsserver.wire.query import FastQuery

log = plugin_log("hosts")

DEFAULT_PATH = "/etc/hosts"
DEFAULT_TTL = 3600
DEFAULT_RELOAD = 5.0

ENTRIES = Gauge("coredns_hosts_entries", "Number of hosts entries (file and Corefile) in use.",
                registry=REGISTRY)
RELOAD_TIMESTAMP = Gauge("coredns_hosts_reload_timestamp_seconds",
                         "Modification time of the hosts file last read, in Unix seconds.", registry=REGISTRY)


@dataclass
class HostsConfig:
    """The `hosts` directive parsed: file, zones, TTL, reverse names, reload, inline entries."""

    path: str = DEFAULT_PATH
    zones: list[str] = field(default_factory=lambda: ["."])
    ttl: int = DEFAULT_TTL
    reverse: bool = True
    reload: float = DEFAULT_RELOAD
    fall: Fallthrough = field(default_factory=Fallthrough)
    fall_unsupported: bool = False
    inline: list[str] = field(default_factory=list)


@dataclass
class HostsMap:
    """What one source (the file, or the inline lines) says, in source order."""

    v4: dict[str, list[str]] = field(default_factory=dict)  # name -> addresses
    v6: dict[str, list[str]] = field(default_factory=dict)
    names: dict[str, list[str]] = field(default_factory=dict)  # address -> names (for PTR)
    wild4: dict[str, list[str]] = field(default_factory=dict)  # "apps.example.org." for *.apps...
    wild6: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(v) for m in (self.v4, self.v6, self.names, self.wild4, self.wild6) for v in m.values())


def _address(text: str) -> tuple[int, str] | None:
    """(family, canonical text) of an address in a hosts file, or None if it is not one."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is dropped
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return 4, str(ip.ipv4_mapped)  # ::ffff:10.0.0.2 is an IPv4 address, as Go reads it
    return (4 if ip.version == 4 else 6), str(ip)


def parse_hosts(text: str, zones: list[str], reverse: bool) -> HostsMap:
    """Hosts-file text as a map; lines that are not `IP NAME...` and names outside `zones` are skipped."""
    out = HostsMap()
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        addr = _address(fields[0])
        if addr is None:
            continue
        family, ip = addr
        for n in fields[1:]:
            name = normalize_zone(n)
            # A name no record can hold (an empty label, one over 63 octets, what IDNA cannot encode)
            # would make the Index raise (fuzz/corpus/hosts/crash-empty-label: one such line stopped the
            # plugin's start): it is skipped like other unreadable lines.
            if match_zone(zones, name) is None or not valid_name(name):
                continue
            if name.startswith("*."):
                wild = out.wild4 if family == 4 else out.wild6
                _add(wild, name[2:], ip)
                continue
            _add(out.v4 if family == 4 else out.v6, name, ip)
            if reverse:
                _add(out.names, ip, name)
    return out


def _add(m: dict[str, list[str]], key: str, value: str) -> None:
    values = m.setdefault(key, [])
    if value not in values:  # a repeated line must not give a repeated record
        values.append(value)


def _reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


class Index:
    """Every answer, built once per (re)load: a query costs one or two dict look-ups.

    The RR objects are shared between replies, so nothing downstream may change them in place.
    """

    __slots__ = ("a", "aaaa", "ptr", "size", "ttl", "wild_a", "wild_aaaa")

    def __init__(self, sources: Iterable[HostsMap], ttl: int) -> None:
        self.ttl = ttl
        v4: dict[str, list[str]] = {}
        v6: dict[str, list[str]] = {}
        names: dict[str, list[str]] = {}
        w4: dict[str, list[str]] = {}
        w6: dict[str, list[str]] = {}
        self.size = 0
        for src in sources:  # file first, then inline: both sets of addresses are served
            self.size += len(src)
            for mine, theirs in ((v4, src.v4), (v6, src.v6), (names, src.names), (w4, src.wild4),
                                 (w6, src.wild6)):
                for k, vals in theirs.items():
                    for v in vals:
                        _add(mine, k, v)
        self.a = {n: [RR(n, TYPE_A, ttl=ttl, rdata=A(ip)) for ip in ips] for n, ips in v4.items()}
        self.aaaa = {n: [RR(n, TYPE_AAAA, ttl=ttl, rdata=AAAA(ip)) for ip in ips] for n, ips in v6.items()}
        self.ptr: dict[str, list[RR]] = {}
        for ip, hosts in names.items():
            rname = _reverse_name(ip)
            self.ptr[rname] = [RR(rname, TYPE_PTR, ttl=ttl, rdata=PTR(h)) for h in hosts]
        # Wildcards keep only the rdata: the owner is the name asked, known at query time.
        self.wild_a = {p: [A(ip) for ip in ips] for p, ips in w4.items()}
        self.wild_aaaa = {p: [AAAA(ip) for ip in ips] for p, ips in w6.items()}

    def lookup(self, name: str) -> tuple[list[RR], list[RR]] | None:
        """(A records, AAAA records) for `name`, or None if the name has no entry at all."""
        a, aaaa = self.a.get(name), self.aaaa.get(name)
        if a is not None or aaaa is not None:
            return a or [], aaaa or []
        dot = name.find(".")
        if dot < 0 or dot + 1 >= len(name):
            return None  # the root or a single label: no `*.` parent to match
        parent = name[dot + 1:]
        wa, waaaa = self.wild_a.get(parent), self.wild_aaaa.get(parent)
        if wa is None and waaaa is None:
            return None
        ttl = self.ttl
        return ([RR(name, TYPE_A, ttl=ttl, rdata=r) for r in wa or ()],
                [RR(name, TYPE_AAAA, ttl=ttl, rdata=r) for r in waaaa or ()])


class Hosts(Plugin):
    """`hosts`: answers from a hosts file and inline entries, remembered as wire bytes (the hot path)."""

    name = "hosts"

    def __init__(self, config: HostsConfig) -> None:
        self.config = config
        self.zones = config.zones
        self.fall = config.fall
        self.inline = parse_hosts("\n".join(config.inline), config.zones, config.reverse)
        self.file = HostsMap()
        self.index = Index((self.file, self.inline), config.ttl)
        self.version = 0
        self.memo = AnswerMemo()
        self.reload_interval = config.reload  # tests shorten it
        self._stamp: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        self._periodic = Periodic(lambda: self.reload_interval, self._reread, "plugin/hosts")

    def fast_answer(self, data: bytes, q: FastQuery, key: bytes, client: tuple[str, int], proto: str,
                    shuffle: bool, max_size: int) -> bytes | None:
        """The hot path: an answer already given for this question since the entries were last read."""
        return self.memo.fast_answer(data, q, key, self.version, shuffle, max_size)

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        known = self.memo.reply(req.wire, self.version)
        if known is not None:
            return known  # what the hot path sends for it, exactly
        reply = await self._serve(req, next)
        # Answers from the entries themselves depend on nothing but the question: keep them as bytes.
        # (Not fallthrough's answers, which belong to later plugins, nor the SERVFAIL for unknown names.)
        if reply is not None and req.answered_by is None and reply.header.rcode == 0:
            self.memo.remember(req.wire, self.version, reply)
        return reply

    async def _serve(self, req: Request, next: Next) -> DNSRecord | None:
        name, qtype, index = req.name, req.qtype, self.index
        if qtype == TYPE_PTR:
            # Reverse names need not be among ZONES: an address with an entry is answered anywhere.
            ptrs = index.ptr.get(name)
            if ptrs is None:
                return await next(req)
            reply = req.reply(aa=True)
            reply.rr = list(ptrs)
            return reply
        if match_zone(self.zones, name) is None:
            return await next(req)
        found = index.lookup(name)
        if found is None:
            if self.fall.covers(name):
                return await next(req)
            return req.reply(SERVFAIL)
        if qtype == TYPE_A:
            answers = found[0]
        elif qtype == TYPE_AAAA:
            answers = found[1]
        else:
            if self.config.fall_unsupported and self.fall.covers(name):
                return await next(req)
            answers = []
        reply = req.reply(aa=True)  # no answers: NODATA, without SOA (there is none to give)
        reply.rr = list(answers)
        return reply

    # -- the file ----------------------------------------------------------------------------

    def read_hosts(self) -> bool:
        """Re-read the file if its mtime or size changed; True if the entries were replaced."""
        path = self.config.path
        try:
            st = os.stat(path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return False
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            # Warned about at setup; a file being replaced must not wipe what was read from it.
            return False
        self.file = parse_hosts(text, self.config.zones, self.config.reverse)
        self.index = Index((self.file, self.inline), self.config.ttl)
        self.version += 1  # every remembered answer is now stale
        self._stamp = stamp
        ENTRIES.set(self.index.size)
        RELOAD_TIMESTAMP.set(st.st_mtime_ns / 1e9)
        log.debug("Parsed hosts file into %d entries", self.index.size)
        return True

    async def start(self) -> None:
        ENTRIES.set(self.index.size)
        self.read_hosts()
        if self.reload_interval > 0:
            self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def _reread(self) -> None:
        # Off the event loop: a big block list takes long enough to parse to delay queries.
        await asyncio.to_thread(self.read_hosts)


def parse(d: Dispenser, ctx: SetupContext) -> HostsConfig:
    cfg = HostsConfig(zones=ctx.zones)
    unsupported_without_fall: CorefileError | None = None
    while d.next():
        args = d.remaining_args()
        if args:
            cfg.path = ctx.path(args[0])
            cfg.zones = plugin_zones(args[1:], ctx)
            _check_file(d, cfg.path)
        while d.next_block():
            unsupported_without_fall = _property(d, ctx, cfg) or unsupported_without_fall
    if unsupported_without_fall is not None and not cfg.fall.enabled:
        raise unsupported_without_fall
    return cfg


def _property(d: Dispenser, ctx: SetupContext, cfg: HostsConfig) -> CorefileError | None:
    """One line of the block: a property, or else (before any `fallthrough`) an inline hosts entry.
    Returns the error to raise if no `fallthrough` follows (fallthrough_unsupported needs one)."""
    prop = d.val()
    if prop == "fallthrough":
        cfg.fall.set(d.remaining_args(), ctx)
    elif prop == "fallthrough_unsupported":
        if d.remaining_args():
            raise d.arg_err()
        cfg.fall_unsupported = True
        return d.err("fallthrough_unsupported requires fallthrough")
    elif prop == "no_reverse":
        if d.remaining_args():
            raise d.arg_err()
        cfg.reverse = False
    elif prop == "ttl":
        cfg.ttl = _ttl(d)
    elif prop == "reload":
        cfg.reload = _reload(d)
    elif not cfg.fall.enabled:
        line = " ".join([prop, *d.remaining_args()])
        if _address(prop) is None or line.count(" ") == 0:
            log.warning("%s:%d: ignoring inline entry %r: not \"IP NAME...\"",
                        d.file(), d.line(), line)
        cfg.inline.append(line)
    else:
        raise d.unknown_property()
    return None


def _check_file(d: Dispenser, path: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        log.warning("File does not exist: %s", path)
        return
    except OSError as e:
        raise d.err(f"unable to access hosts file '{path}': {e}") from None
    if stat.S_ISDIR(st.st_mode):
        log.warning('Hosts file "%s" is a directory', path)


def _ttl(d: Dispenser) -> int:
    values = d.remaining_args()
    if not values:
        raise d.err("ttl needs a time in second")
    digits = values[0].lstrip("+-")
    # int() alone would also take "1_000" and non-ASCII digits, which CoreDNS rejects.
    if not (digits.isascii() and digits.isdigit()):
        raise d.err("ttl needs a number of second")
    ttl = int(values[0])
    if not 1 <= ttl <= 65535:
        raise d.err("ttl provided is invalid")
    return ttl


def _reload(d: Dispenser) -> float:
    values = d.remaining_args()
    if len(values) != 1:
        raise d.err("reload needs a duration (zero seconds to disable)")
    try:
        seconds = parse_duration(values[0])
    except ValueError:
        raise d.err(f"invalid duration for reload '{values[0]}'") from None
    if seconds < 0:
        raise d.err(f"invalid duration for reload '{values[0]}'")
    return seconds


def setup(d: Dispenser, ctx: SetupContext) -> Hosts:
    return Hosts(parse(d, ctx))
