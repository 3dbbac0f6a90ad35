"""autopath: complete the client's search path on the server, answering the first name that exists.

## Syntax

```
autopath [ZONES...] RESOLV-CONF
```

* **ZONES** are the zones autopath works in; default the server block's zones. A query for a name
  outside them passes on untouched.
* **RESOLV-CONF** is a `resolv.conf`-style file whose `search` (or `domain`) line gives the search
  path, the same for every client; or `@PLUGIN`, a plugin of the same block that gives each client's
  search path per query. `@kubernetes` (with `pods verified`) finds the client's Pod by the query's
  source address and gives `NAMESPACE.svc.ZONE`, `svc.ZONE`, `ZONE`, then the search path of this
  host's `/etc/resolv.conf`: the path a Pod with `dnsPolicy: ClusterFirst` searches. A client that is
  no known Pod, or a kubernetes plugin without `pods verified`, gets no autopath.

When a query's name is the first element of the client's search path or under it, the name's base
(the name without that element) is looked up with each element of the path in turn, and then bare,
through the rest of the chain; the first reply that is not NXDOMAIN is the answer, with a CNAME from
the name asked to the owner of its first record put in front (its TTL that record's), and the
question as the client asked it. If every lookup is NXDOMAIN the first lookup's reply is sent, and the
client goes on searching itself. A name that is exactly the first element passes on untouched (CoreDNS
answers it SERVFAIL). `coredns_autopath_success_total{server}` counts the replies found this way.

With `@PLUGIN` the answer depends on the client (its namespace). autopath keeps its block on the hot
path (stored wire answers) by being the block's store itself, keyed by what the answer depends on: a
query it would pass on unchanged (a name outside the client's first search element, a client that is no
Pod) gets the answer of the store after it (cache, hosts, kubernetes); a query it works on gets the same
walk made on that store's answers, one stored answer per name looked up (names that hold the namespace
themselves), with the reply made as the chain makes it. Nothing answered for one client is stored for
the question it asked, so one Pod's answer never answers another's query; a lookup the store misses
sends the query to the chain. The cache's own answers stay keyed by question.

## Examples

```corefile
cluster.local {
    autopath @kubernetes
    cache 30
    kubernetes cluster.local {
        manifests cluster.yaml
        pods verified
    }
}
```

A fixed search path from a file with the line `search example.org example.net`:

```corefile
. {
    autopath my-resolv.conf
    forward . 127.0.0.1:5301
}
```
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial
from typing import Protocol, runtime_checkable

from dnslib import CNAME, QTYPE, RR, DNSHeader, DNSQuestion, DNSRecord
from prometheus_client import Counter

from corefile import CorefileError, Dispenser, normalize_zone
from dnsserver.config import first_unskippable
from dnsserver.metrics import REGISTRY
from dnsserver.plugin import BlockView, FastStore, Next, Plugin, SetupContext, match_zone, plugin_zones
from dnsserver.request import Request
from dnsserver.wire.consts import NXDOMAIN, TYPE_OPT
from dnsserver.wire.query import FastQuery, parse_query
from dnsserver.wire.reply import scrub

MADE_LIMIT = 10_000  # replies made by the hot path's walk, kept by what they are made of

# A walk on stored answers: the client's name as spelled, and each lookup's query (without its ID) and reading.
Plan = tuple[str, list[tuple[bytes, FastQuery]]]

SUCCESS = Counter("coredns_autopath_success", "Counter of requests that did autopath.", ["server"], registry=REGISTRY)

@runtime_checkable
class AutoPather(Protocol):
    """A plugin that gives the search path of the client asking for `name` (lower-case FQDN), ending with
    the empty element (the bare name); None or [] when autopath is not to be done (kubernetes)."""

    def autopath(self, name: str, client_ip: str) -> list[str] | None: ...


def resolv_search(path: str) -> list[str]:
    """The search path of a resolv.conf file, normalised; the last `search` or `domain` line decides, as
    in the resolvers CoreDNS reads it with. OSError if it cannot be read."""
    search: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            words = line.split("#", 1)[0].split(";", 1)[0].split()
            if len(words) >= 2 and words[0] in ("search", "domain"):
                search = words[1:] if words[0] == "search" else words[1:2]
    return [normalize_zone(s) for s in search]


def first_in_search(name: str, first: str) -> bool:
    """Whether `name` is the first search element or under it (both lower-case FQDNs)."""
    return name == first or first == "." or name.endswith("." + first)


# Bytes a label may hold for the hot path to read it back as text exactly as dnslib would (others: the chain).
_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*")


@lru_cache(maxsize=65536)  # a pure function of names that repeat: per query on the hot path
def wire_name(labels: bytes) -> str | None:
    """The FQDN of a name's wire labels (without the root's zero byte), or None when a label holds a byte
    other than letters, digits, `-`, `_` and `*`, or the labels do not add up."""
    out: list[str] = []
    i, end = 0, len(labels)
    while i < end:
        n = labels[i]
        label = labels[i + 1:i + 1 + n]
        if n == 0 or i + 1 + n > end or not _PLAIN.issuperset(label):
            return None
        out.append(label.decode("ascii"))
        i += 1 + n
    return ".".join(out) + "." if out else "."


def key_name(key: bytes) -> str | None:
    """The lower-case FQDN at the front of a hot-path key (the name's labels, then type, class and a flag
    byte), or None when it cannot be read back as text exactly."""
    return wire_name(key[:-5])


@lru_cache(maxsize=4096)
def labels_of(name: str) -> bytes:
    """The wire labels of a lower-case FQDN, without the root's zero byte."""
    return b"".join(bytes([len(x)]) + x.encode("ascii") for x in name.split(".") if x)


def store_after(plugins: list[Plugin], me: Plugin) -> tuple[FastStore | None, bool]:
    """The store a plugin that is its block's hot-path store may hand queries on to: the first plugin after
    it that must see queries, if that answers from wire bytes; and whether a plugin between shuffles."""
    first, shuffle = first_unskippable(plugins[plugins.index(me) + 1:] if me in plugins else [])
    if isinstance(first, FastStore):
        return first, shuffle
    return None, shuffle


class AutoPath(Plugin):
    """`autopath`: server-side search path completion."""

    name = "autopath"

    def __init__(self, ctx: SetupContext, zones: list[str], search: list[str], via: str | None) -> None:
        self.ctx = ctx
        self.zones = zones
        self.search = search  # the fixed path (ending with ""), when not `@PLUGIN`
        self.via = via  # the plugin named by `@PLUGIN`
        self.pather: AutoPather | None = None
        self.next_store: FastStore | None = None
        self.next_shuffle = False
        self.made_memo: dict[tuple[bytes, bytes, bool, bool], bytes] = {}
        self.plans: dict[tuple[bytes, str], Plan] = {}
        self.server = ""  # the server label of the metric, as the chain last saw it (the hot path has none)
        self.success: Counter | None = None  # its child for that label, set by the chain
        # An error at the directive's line, for what is found wrong once the block is built; set by setup.
        self.where: Callable[[str], CorefileError] = partial(CorefileError, "", 0)

    def check_block(self, block: BlockView) -> None:
        """Once the block is built: the plugin `@NAME` names (absent: autopath does nothing, as in CoreDNS;
        present, it must give search paths) and the store after this one."""
        plugins = list(block.plugins)
        if self.via is not None:
            other = next((p for p in plugins if p.name == self.via), None)
            if other is not None and not isinstance(other, AutoPather):
                raise self.where(f"{self.via} does not implement the AutoPather interface")
            self.pather = other
        self.next_store, self.next_shuffle = store_after(plugins, self)

    def search_for(self, name: str, client_ip: str) -> list[str]:
        """The client's search path for `name`, empty when autopath is not to be done."""
        if self.via is None:
            return self.search
        if self.pather is None:
            return []
        return self.pather.autopath(name, client_ip) or []

    def applies(self, name: str, client_ip: str) -> list[str] | None:
        """The search path to walk for this query, or None when autopath passes it on untouched."""
        if match_zone(self.zones, name) is None:
            return None
        search = self.search_for(name, client_ip)
        if not search or name == search[0] or not first_in_search(name, search[0]):
            return None
        return search

    # -- the hot path ---------------------------------------------------------------------------------

    def fast_answer(self, data: bytes, q: FastQuery, key: bytes, client: tuple[str, int], proto: str,
                    shuffle: bool, max_size: int) -> bytes | None:
        """The next store's answer when autopath would pass this query on unchanged; when it works on the
        query, the walk made on the next store's answers (`fast_walk`). None (the chain) on any miss."""
        store = self.next_store
        if store is None:
            return None
        shuffle = shuffle or self.next_shuffle
        if self.via is not None and self.pather is None:
            return store.fast_answer(data, q, key, client, proto, shuffle, max_size)  # nothing gives paths
        name = key_name(key)
        if name is None:
            return None
        search = self.applies(name, client[0])
        if search is None:
            return store.fast_answer(data, q, key, client, proto, shuffle, max_size)
        return self.fast_walk(store, data, q, search, client, proto, shuffle, max_size)

    def fast_walk(self, store: FastStore, data: bytes, q: FastQuery, search: list[str], client: tuple[str, int],
                  proto: str, shuffle: bool, max_size: int) -> bytes | None:
        """`serve`'s walk on stored answers: each lookup a query made of the client's bytes with the name
        replaced (as `serve`'s lookups are), answered by the next store, the reply made as the chain makes it
        (the same `cnamed`, packing and scrub), so the client gets the chain's bytes. Answers stay the
        store's, kept per name looked up: nothing of one client's is kept for another. Any miss: None."""
        subs = self.walk_plan(data, q, search)
        if subs is None:
            return None
        qname, lookups = subs
        ident = data[0:2]
        first_out: bytes | None = None
        for i, (sub, sq) in enumerate(lookups):
            sub = ident + sub
            out = store.fast_answer(sub, sq, sq.key, client, proto, shuffle, 65535)
            if out is None:
                return None
            if i == 0:
                first_out = out
            if out[3] & 0xF == NXDOMAIN:
                continue
            if self.success is not None:  # the chain ran first (routes are learnt from it): always set
                self.success.inc()
            return self.made(out, True, data, q, qname, proto, max_size)
        if first_out is None:
            return None
        return self.made(first_out, False, data, q, qname, proto, max_size)

    def walk_plan(self, data: bytes, q: FastQuery, search: list[str]) -> Plan | None:
        """The client's name (as spelled) and the lookups of the walk: each a query made of the client's bytes
        with the name replaced (as `serve`'s lookups are; without the ID) and its reading. Kept per query
        and first search element, which decide them; None when the name cannot be walked here."""
        key = (data[2:], search[0])
        plan = self.plans.get(key)
        if plan is not None:
            return plan
        end = q.qend - 5  # the name's zero byte
        first = labels_of(search[0])
        qname = wire_name(data[12:end])
        if len(first) >= end - 12 or qname is None:
            return None
        base = data[12:end - len(first)]  # the client's spelling, without the first element
        lookups: list[tuple[bytes, FastQuery]] = []
        for element in search:
            sub = data[:12] + base + labels_of(element) + data[end:]
            sq = parse_query(sub)
            if sq is None:
                return None
            lookups.append((sub[2:], sq))
        if len(self.plans) >= MADE_LIMIT:
            self.plans.clear()  # a cheap bound, as for the replies made
        plan = self.plans[key] = (qname, lookups)
        return plan

    def made(self, out: bytes, found: bool, data: bytes, q: FastQuery, qname: str, proto: str,
             max_size: int) -> bytes | None:
        """The client's reply from a lookup's stored reply `out` (`found`: put through `cnamed`; else the
        first lookup's, sent as it is). A pure function of the two messages but for their IDs, kept in a
        bounded table: parsing and packing them costs more than the rest of the walk."""
        key = (out[2:], data[2:], proto == "udp", found)
        made = self.made_memo.get(key)
        if made is None:
            reply = DNSRecord.parse(out)
            reply.ar = [r for r in reply.ar if r.rtype != TYPE_OPT]  # the chain's lookups carry none
            if found:
                reply = self.cnamed(qname, q.qtype, 1, reply)
            made = self.finished(reply, data, q, qname, proto)
            if len(self.made_memo) >= MADE_LIMIT:
                self.made_memo.clear()  # a cheap bound: answers in use come back at their next walk
            self.made_memo[key] = made
        return data[0:2] + made[2:] if len(made) <= max_size else None

    @staticmethod
    def finished(reply: DNSRecord, data: bytes, q: FastQuery, qname: str, proto: str) -> bytes:
        """The bytes the server makes of the chain's `reply` (dnsserver.respond.packed, then the scrub)."""
        h = reply.header
        h.id = int.from_bytes(data[0:2], "big")
        h.qr = 1
        reply.questions = [DNSQuestion(qname, q.qtype, 1)]
        limit = q.udp_size if proto == "udp" else 65535
        out: bytes = scrub(reply.pack(), q.edns, q.udp_size, q.do, limit)
        return out

    # -- the chain ------------------------------------------------------------------------------------

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        if req.server != self.server:  # the hot path counts under the label the chain last saw
            self.server, self.success = req.server, SUCCESS.labels(req.server)
        search = self.applies(req.name, req.client_ip)
        if search is None:
            return await next(req)
        first = search[0]
        base = req.qname[: len(req.qname) - len(first) - 1]  # the client's spelling, without the element
        first_reply: DNSRecord | None = None
        for i, element in enumerate(search):
            name = f"{base}.{element}" if element not in ("", ".") else f"{base}."
            reply = await next(req.clone_for(name))
            if i == 0:
                first_reply = reply
            if reply is None or reply.header.rcode == NXDOMAIN:
                continue
            SUCCESS.labels(req.server).inc()
            return self.cnamed(req.qname, req.qtype, req.qclass, reply)
        return first_reply

    @staticmethod
    def cnamed(qname: str, qtype: int, qclass: int, found: DNSRecord) -> DNSRecord:
        """`found` as the answer to the client's question (`qname` as it spelled it): a CNAME from the name
        asked to the owner of the first answer record not of that name put in front (CoreDNS's cnamer). A
        new message: `found` may hold a store's shared records and lists."""
        rr = list(found.rr)
        name = qname.lower()
        for r in rr:
            if str(r.rname).lower() == name:
                continue
            rr.insert(0, RR(qname, QTYPE.CNAME, 1, r.ttl, CNAME(r.rname)))
            break
        h = found.header
        return DNSRecord(DNSHeader(id=h.id, bitmap=h.bitmap), questions=[DNSQuestion(qname, qtype, qclass)],
                         rr=rr, auth=list(found.auth), ar=list(found.ar))


def setup(d: Dispenser, ctx: SetupContext) -> AutoPath:
    plugin: AutoPath | None = None
    while d.next():
        directive = d.token()
        args = d.remaining_args()
        if not args:
            raise d.err("no resolv-conf specified")
        resolv = args[-1]
        zones = plugin_zones(args[:-1], ctx)
        if resolv.startswith("@"):
            if len(resolv) == 1:
                raise d.err("no plugin named after @")
            plugin = AutoPath(ctx, zones, [], resolv[1:])
        else:
            try:
                search = resolv_search(ctx.path(resolv))
            except OSError as e:
                raise d.err(f"failed to parse {resolv!r}: {e.strerror or e}") from None
            plugin = AutoPath(ctx, zones, [*search, ""], None)  # "" last: the bare name is tried last
        plugin.where = partial(d.err_at, directive)
        if d.next_block():
            raise d.err(f"unexpected block: autopath takes no properties ({d.val()!r})")
    assert plugin is not None
    return plugin
