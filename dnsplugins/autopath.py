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
path (stored wire answers of a cache, hosts or kubernetes after it) by being the block's store itself:
it hands a query to the store after it only when the query's name is not in the client's first search
element, that is when autopath would pass the query on unchanged; every query autopath works on runs
the chain, so an answer made for one Pod's namespace never answers another client. Stores after it
hold the answers of the single lookups, keyed by the names looked up, which do not depend on the client.

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
from functools import partial
from typing import Protocol, runtime_checkable

from dnslib import CNAME, QTYPE, RR, DNSHeader, DNSQuestion, DNSRecord
from prometheus_client import Counter

from corefile import CorefileError, Dispenser, normalize_zone
from dnsserver.config import first_unskippable
from dnsserver.metrics import REGISTRY
from dnsserver.plugin import BlockView, FastStore, Next, Plugin, SetupContext, match_zone, plugin_zones
from dnsserver.request import Request
from dnsserver.wire.consts import NXDOMAIN
from dnsserver.wire.query import FastQuery

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


def key_name(key: bytes) -> str | None:
    """The lower-case FQDN at the front of a hot-path key (the name's labels without the root's zero byte,
    then type, class and a flag byte), or None when its labels cannot be read back as text unambiguously."""
    labels: list[str] = []
    i, end = 0, len(key) - 5
    while i < end:
        n = key[i]
        label = key[i + 1:i + 1 + n]
        if n == 0 or i + 1 + n > end or b"." in label or not label.isascii():
            return None
        labels.append(label.decode("ascii"))
        i += 1 + n
    return ".".join(labels) + "." if labels else "."


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
        """The next store's answer when autopath would pass this query on unchanged; None (the chain) when
        autopath works on it, whose answer depends on the client and is never stored."""
        store = self.next_store
        if store is None:
            return None
        if self.via is not None and self.pather is None:
            pass  # nothing gives search paths: every query passes on
        else:
            name = key_name(key)
            if name is None or self.applies(name, client[0]) is not None:
                return None
        return store.fast_answer(data, q, key, client, proto, shuffle or self.next_shuffle, max_size)

    # -- the chain ------------------------------------------------------------------------------------

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
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
            return self.cnamed(req, reply)
        return first_reply

    @staticmethod
    def cnamed(req: Request, found: DNSRecord) -> DNSRecord:
        """`found` as the answer to the client's question: a CNAME from the name asked to the owner of the
        first answer record (unless that is the name asked) put in front. A new message: `found` may hold
        a store's shared records and lists."""
        rr = list(found.rr)
        for r in rr:
            if str(r.rname).lower() == req.name:
                continue
            rr.insert(0, RR(req.qname, QTYPE.CNAME, 1, r.ttl, CNAME(r.rname)))
            break
        h = found.header
        return DNSRecord(DNSHeader(id=h.id, bitmap=h.bitmap), questions=[DNSQuestion(req.qname, req.qtype, req.qclass)],
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
