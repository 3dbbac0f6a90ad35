"""A loaded zone: records indexed by owner and type, and the authoritative lookup (RFC 1034 §4.3.2).

Built once per (re)load and never changed afterwards, so a reload swaps a whole Zone and queries in
flight keep the one they started with. The RR objects are shared by every reply: whoever changes a
record must copy it (see dnsserver.plugin). Wildcard answers are the one place records are made per
query, because their owner is the name asked.

Names are the lower-case text the server matches on (`Request.name`). Besides the owners, the zone
knows every empty non-terminal (a name with no records but with names below it), because such a
name exists: it answers NODATA, not NXDOMAIN, and it blocks a wildcard above it (RFC 4592 §2.2.2).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dnslib import RR
from dnslib.label import DNSBuffer

from dnsplugins.file.zonefile import ParsedZone
from dnsserver.wire.consts import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_CNAME,
    TYPE_DS,
    TYPE_MX,
    TYPE_NS,
    TYPE_RRSIG,
    TYPE_SOA,
    TYPE_SRV,
)

MAX_CHAIN = 8  # CNAMEs followed after the first, as CoreDNS does; a loop ends earlier

SUCCESS, NODATA, NXDOMAIN, DELEGATION = "success", "nodata", "nxdomain", "delegation"

Node = dict[int, list[RR]]  # type -> RRset


@dataclass(slots=True)
class Answer:
    """What a zone says about a name and type: the kind of answer and its sections."""

    kind: str  # SUCCESS, NODATA, NXDOMAIN or DELEGATION
    answer: list[RR] = field(default_factory=list)
    ns: list[RR] = field(default_factory=list)
    extra: list[RR] = field(default_factory=list)


def child(label: str, parent: str) -> str:
    return label + "." + parent if parent != "." else label + "."


def parent_of(name: str) -> str:
    dot = name.find(".")
    if dot < 0 or dot + 1 >= len(name):
        return "."
    return name[dot + 1:]


def _rename(records: Iterable[RR], owner: str) -> list[RR]:
    """Wildcard synthesis: the same data, owned by the name asked (RFC 4592 §2.2.1)."""
    return [RR(owner, r.rtype, r.rclass, r.ttl, r.rdata) for r in records]


class Zone:
    """A loaded zone: its records by name, delegation cuts and SOA, read-only once built."""

    __slots__ = (
        "axfr",
        "cuts",
        "names",
        "neg_soa",
        "nodes",
        "origin",
        "serial",
        "sigs",
        "size",
        "soa",
    )

    def __init__(self, parsed: ParsedZone) -> None:
        assert parsed.soa is not None
        self.origin = parsed.origin
        self.soa: RR = parsed.soa.rr
        self.serial = int(self.soa.rdata.times[0])
        # RFC 2308 §3: a negative answer's SOA lives min(its TTL, MINIMUM) seconds.
        self.neg_soa = RR(self.soa.rname, TYPE_SOA, 1, min(self.soa.ttl, int(self.soa.rdata.times[4])), self.soa.rdata)
        self.nodes: dict[str, Node] = {}
        self.sigs: dict[str, Node] = {}  # owner -> covered type -> RRSIGs (served only with DO)
        self.size = len(parsed.records)
        seen: set[tuple[str, int, int, bytes]] = set()
        order: list[tuple[str, RR]] = []
        for rec in parsed.records:
            rr = rec.rr
            owner = str(rr.rname).lower()
            key = (owner, rr.rtype, rr.rclass, _wire(rr))
            if key in seen:  # the same record twice is one record (an RRset is a set)
                continue
            seen.add(key)
            if rr.rtype == TYPE_RRSIG:
                self.sigs.setdefault(owner, {}).setdefault(rr.rdata.covered, []).append(rr)
            else:
                self.nodes.setdefault(owner, {}).setdefault(rr.rtype, []).append(rr)
            if rr.rtype != TYPE_SOA:
                order.append((owner, rr))
        self.names: set[str] = set()
        for owner in list(self.nodes) + list(self.sigs):
            name = owner
            while name not in self.names:
                self.names.add(name)
                if name == self.origin or name == ".":
                    break
                name = parent_of(name)
        # Zone cuts: NS below the apex. Data at or below a cut is glue, not ours to answer with.
        self.cuts = {n for n, node in self.nodes.items() if TYPE_NS in node and n != self.origin}
        # AXFR order (RFC 5936 §2.2): SOA first and last, the apex's records next, then by name.
        order.sort(key=lambda item: (item[0] != self.origin, _canonical(item[0])))
        self.axfr: list[RR] = [self.soa, *(rr for _, rr in order), self.soa]

    # -- lookup --------------------------------------------------------------------------------

    def lookup(self, qname: str, qtype: int, do: bool = False) -> Answer:
        """The answer to `qname` (lower case, in this zone) and `qtype`, as RFC 1034 §4.3.2 finds it."""
        origin = self.origin
        if qname == origin:
            if qtype == TYPE_SOA:
                return Answer(SUCCESS, self._set(origin, TYPE_SOA, [self.soa], do), self._apex_ns(do))
            if qtype == TYPE_NS:
                ns = self._set(origin, TYPE_NS, self.nodes.get(origin, {}).get(TYPE_NS, []), do)
                return Answer(SUCCESS, ns, [], self._addresses(ns, do))
        where, name = self._locate(qname, qtype)
        if where == "cut":
            return self._referral(name, do)
        if where == "none":
            return Answer(NXDOMAIN, [], self._negative(do))
        node = self.nodes.get(name)
        if node is None:  # an empty non-terminal (or an empty wildcard): the name exists, the type not
            return Answer(NODATA, [], self._negative(do))
        cname = node.get(TYPE_CNAME)
        if cname and qtype != TYPE_CNAME:
            answer = self._data(where, name, qname, TYPE_CNAME, cname, do)
            return Answer(SUCCESS, self._chase(qname, answer, _target(cname), qtype, do), self._apex_ns(do))
        rrs = node.get(qtype)
        if not rrs:
            return Answer(NODATA, [], self._negative(do))
        answer = self._data(where, name, qname, qtype, rrs, do)
        return Answer(SUCCESS, answer, self._apex_ns(do), self._additional(rrs, do))

    def _locate(self, qname: str, qtype: int) -> tuple[str, str]:
        """Where `qname` lands: ("cut", zone cut), ("name", qname), ("wild", wildcard) or ("none", "").

        The walk goes down from the apex one label at a time, so the highest zone cut wins and the
        deepest existing name is the closest encloser when `qname` does not exist.
        """
        origin = self.origin
        if qname == origin:
            return "name", qname
        rel = qname[:len(qname) - len(origin)] if origin != "." else qname  # "www.sub." of www.sub.<origin>
        labels = rel[:-1].split(".")
        name = origin
        for i in range(len(labels) - 1, -1, -1):
            below = child(labels[i], name)
            if below not in self.names:
                wild = child("*", name)
                return ("wild", wild) if wild in self.names else ("none", "")
            # A DS query for the cut itself belongs to this (parent) side (RFC 4035 §3.1.4.1).
            if below in self.cuts and not (qtype == TYPE_DS and i == 0):
                return "cut", below
            name = below
        return "name", qname

    def _data(self, where: str, name: str, qname: str, qtype: int, rrs: list[RR], do: bool) -> list[RR]:
        """An RRset for the answer (with its signatures when DO is set), renamed if from a wildcard."""
        out = self._set(name, qtype, rrs, do)
        return _rename(out, qname) if where == "wild" else out

    def _chase(self, qname: str, answer: list[RR], target: str, qtype: int, do: bool) -> list[RR]:
        """Follow CNAMEs inside the zone and add the final target's records of the asked type.

        Ends at a loop, after MAX_CHAIN more CNAMEs, at a name outside the zone or under a cut, or at
        a target that does not exist: whatever was found so far is the answer (NOERROR, as CoreDNS).
        """
        seen = {qname}
        for _ in range(MAX_CHAIN + 1):
            if target in seen or not in_zone(target, self.origin):
                break
            seen.add(target)
            where, name = self._locate(target, qtype)
            node = self.nodes.get(name) if where in ("name", "wild") else None
            if node is None:
                break
            cname = node.get(TYPE_CNAME)
            if cname and qtype != TYPE_CNAME:
                answer += self._data(where, name, target, TYPE_CNAME, cname, do)
                target = _target(cname)
                continue
            rrs = node.get(qtype)
            if rrs:
                answer += self._data(where, name, target, qtype, rrs, do)
            break
        return answer

    # -- pieces of answers -----------------------------------------------------------------------

    def _set(self, owner: str, rtype: int, rrs: list[RR], do: bool) -> list[RR]:
        if not do:
            return list(rrs)
        return [*rrs, *self.sigs.get(owner, {}).get(rtype, ())]

    def _apex_ns(self, do: bool) -> list[RR]:
        return self._set(self.origin, TYPE_NS, self.nodes.get(self.origin, {}).get(TYPE_NS, []), do)

    def _negative(self, do: bool) -> list[RR]:
        return self._set(self.origin, TYPE_SOA, [self.neg_soa], do)

    def _referral(self, cut: str, do: bool) -> Answer:
        node = self.nodes[cut]
        ns = list(node[TYPE_NS])
        if do:  # the DS (or its absence, which needs NSEC we do not synthesise) says whether it is signed
            ns += self._set(cut, TYPE_DS, node.get(TYPE_DS, []), do)
        return Answer(DELEGATION, [], ns, self._addresses(node[TYPE_NS], False))

    def _addresses(self, rrs: list[RR], do: bool) -> list[RR]:
        """A and AAAA records of in-zone NS, MX and SRV targets (glue included) for the additional section."""
        out: list[RR] = []
        for rr in rrs:
            if rr.rtype == TYPE_NS or rr.rtype == TYPE_MX or rr.rtype == TYPE_SRV:
                target = str(rr.rdata.label if rr.rtype != TYPE_SRV else rr.rdata.target).lower()
                node = self.nodes.get(target)
                if node is None:
                    continue
                for t in (TYPE_A, TYPE_AAAA):
                    if t in node:
                        out += self._set(target, t, node[t], do)
        return out

    def _additional(self, rrs: list[RR], do: bool) -> list[RR]:
        # MX and SRV answers carry their targets' addresses; other types carry nothing extra.
        if rrs[0].rtype not in (TYPE_MX, TYPE_SRV):
            return []
        return self._addresses(rrs, do)


def in_zone(name: str, origin: str) -> bool:
    return origin == "." or name == origin or name.endswith("." + origin)


def _target(cname: list[RR]) -> str:
    return str(cname[0].rdata.label).lower()


def _wire(rr: RR) -> bytes:
    buf = DNSBuffer()
    rr.rdata.pack(buf)
    return bytes(buf.data)


def _canonical(name: str) -> tuple[str, ...]:
    """RFC 4034 §6.1 order, near enough for AXFR: compare labels from the root down."""
    return tuple(reversed(name.rstrip(".").split(".")))
