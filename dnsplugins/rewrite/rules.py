"""rewrite's rules at run time: how names are matched and mapped, what each rule does to the question,
and what it undoes in the reply."""

from __future__ import annotations

import copy
import re
from collections.abc import Awaitable, Callable, Iterator

from dnslib import RD, RR, DNSLabel, DNSRecord

from dnsserver.logs import plugin_log
from dnsserver.wire.consts import TYPE_CNAME, TYPE_DNAME, TYPE_OPT
from dnsserver.wire.names import name_text

log = plugin_log("rewrite")



STOP, CONTINUE = "stop", "continue"
EXACT, PREFIX, SUFFIX, SUBSTRING, REGEX = "exact", "prefix", "suffix", "substring", "regex"
MATCH_TYPES = (EXACT, PREFIX, SUFFIX, SUBSTRING, REGEX)
MAX_REGEX_LEN = 10000  # a bound on what a Corefile may make the regex compiler chew on
TTL_NO_MAX = 2147483647  # `MIN-`: the largest TTL RFC 2181 allows
U32_MAX = 4294967295

# Query types dnslib has no name for but CoreDNS accepts by name (miekg/dns's StringToType).
EXTRA_TYPES = {
    "MD": 3, "MF": 4, "MB": 7, "MG": 8, "MR": 9, "WKS": 11, "MINFO": 14, "X25": 19, "ISDN": 20, "RT": 21,
    "NSAPPTR": 23, "PX": 26, "GPOS": 27, "NXT": 30, "EID": 31, "NIMLOC": 32, "ATMA": 34, "SMIMEA": 53,
    "NINFO": 56, "RKEY": 57, "TALINK": 58, "UINFO": 100, "UID": 101, "GID": 102, "UNSPEC": 103,
    "NID": 104, "L32": 105, "L64": 106, "LP": 107, "NXNAME": 128, "MAILB": 253, "MAILA": 254,
    "AVC": 258, "DOA": 259, "AMTRELAY": 260, "RESINFO": 261,
}
CLASSES = {"IN": 1, "CS": 2, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255}
RCODES = {
    "NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5, "YXDOMAIN": 6,
    "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10, "BADSIG": 16, "BADVERS": 16, "BADKEY": 17,
    "BADTIME": 18, "BADMODE": 19, "BADNAME": 20, "BADALG": 21, "BADTRUNC": 22, "BADCOOKIE": 23,
}
# The attribute of the dnslib rdata object that holds the name `answer value` rewrites, by type.
VALUE_ATTRS = {2: "label", 5: "label", 12: "label", 15: "label", 6: "mname", 33: "target", 35: "replacement"}

Lookup = Callable[[str, int], Awaitable["DNSRecord | None"]]
Mapper = Callable[[str], "str | None"]  # a name (lower case) to its new form, or None: leave it


class RewriteError(ValueError):
    """A query the rules cannot turn into a valid question (answered SERVFAIL)."""


# -- matching and mapping names -------------------------------------------------------------


def expand(template: str, m: re.Match[str]) -> str:
    """`template` with {0} (the whole match), {1}, {2}, ... replaced; a group that did not take part is ""."""
    groups = (m.group(0), *m.groups())
    for i, g in enumerate(groups):
        template = template.replace("{" + str(i) + "}", g or "")
    return template


def groups_used(template: str) -> int:
    """How many distinct {N} references (N up to 100) `template` makes."""
    return sum(1 for i in range(101) if "{" + str(i) + "}" in template)


def renamer(kind: str, source: str, target: str, pattern: re.Pattern[str] | None) -> Mapper:
    """What a `name`-style rule does to a lower-case name: the new name, or None when it does not match."""
    if kind == EXACT:
        return lambda n: target if n == source else None
    if kind == PREFIX:
        return lambda n: target + n[len(source):] if n.startswith(source) else None
    if kind == SUFFIX:
        return swap_suffix(source, target)
    if kind == SUBSTRING:
        return lambda n: n.replace(source, target) if source in n else None
    assert pattern is not None
    return by_regex(pattern, target)


def matcher(kind: str, value: str, pattern: re.Pattern[str] | None) -> Callable[[str], bool]:
    """Whether a lower-case name matches, for the rules that only test it (ttl, rcode)."""
    if kind == EXACT:
        return lambda n: n == value
    if kind == PREFIX:
        return lambda n: n.startswith(value)
    if kind == SUFFIX:
        return lambda n: n.endswith(value)
    if kind == SUBSTRING:
        return lambda n: value in n
    assert pattern is not None
    return lambda n: pattern.search(n) is not None


def remap(orig: str, replacement: str) -> Mapper:
    """`orig` itself, or a name under it (at a label boundary), moved to `replacement`.

    This is how `answer auto` undoes a rewrite: the name the chain was asked, and its subdomains
    (a CNAME target, an SRV target), become the name the client asked.
    """
    under = "." + orig
    cut = len(orig)

    def mapped(n: str) -> str | None:
        if n == orig:
            return replacement
        if n.endswith(under):
            return n[:len(n) - cut] + replacement
        return None

    return mapped


def swap_suffix(suffix: str, replacement: str) -> Mapper:
    return lambda n: n[:len(n) - len(suffix)] + replacement if n.endswith(suffix) else None


def by_regex(pattern: re.Pattern[str], template: str) -> Mapper:
    def mapped(n: str) -> str | None:
        m = pattern.search(n)
        return expand(template, m) if m is not None else None

    return mapped


def valid_name(name: str) -> bool:
    """A name that can go on the wire: labels of 1-63 bytes, 255 bytes in all (as miekg's IsDomainName)."""
    if name in (".", ""):
        return name == "."
    try:
        labels = DNSLabel(name).label  # encodes (IDNA) and rejects empty or over-long labels
    except Exception:
        return False
    return all(0 < len(x) <= 63 for x in labels) and sum(len(x) + 1 for x in labels) + 1 <= 255


# -- what a rule asks of the reply ------------------------------------------------------------


def records(msg: DNSRecord) -> Iterator[RR]:
    """Every record of the reply a response rule may touch: all three sections, never the OPT."""
    for section in (msg.rr, msg.auth, msg.ar):
        for rr in section:
            if rr.rtype != TYPE_OPT:
                yield rr


class Response:
    """One change to make to the reply. The records it sees are already private copies."""

    on_empty = False  # True: also applies when nobody answered (to the SERVFAIL the server would send)

    async def apply(self, msg: DNSRecord, lookup: Lookup) -> None:
        raise NotImplementedError


class OwnerNames(Response):
    """Maps the owner names of the reply's records back (answer name)."""

    def __init__(self, mapper: Mapper) -> None:
        self.mapper = mapper

    async def apply(self, msg: DNSRecord, lookup: Lookup) -> None:
        mapper = self.mapper
        for rr in records(msg):
            new = mapper(str(rr.rname).lower())
            if new is not None:
                rr.rname = new


class ValueNames(Response):
    """Maps the names inside records' data back (answer value: CNAME, SRV, ... targets)."""

    def __init__(self, mapper: Mapper) -> None:
        self.mapper = mapper

    async def apply(self, msg: DNSRecord, lookup: Lookup) -> None:
        for rr in records(msg):
            attr = VALUE_ATTRS.get(rr.rtype)
            if attr is not None:
                label = getattr(rr.rdata, attr, None)
                if isinstance(label, DNSLabel):
                    new = self.mapper(str(label).lower())
                    if new is not None:
                        rd = copy.copy(rr.rdata)  # the rdata object may be shared with other replies
                        setattr(rd, attr, new)
                        rr.rdata = rd
            elif rr.rtype == TYPE_DNAME:
                target = dname_target(rr.rdata)
                new = self.mapper(target.lower()) if target is not None else None
                if new is not None:
                    rr.rdata = RD(b"".join(bytes([len(x)]) + x for x in DNSLabel(new).label) + b"\0")


def dname_target(rd: RD) -> str | None:
    """The target of a DNAME, which dnslib keeps as raw bytes; None if compressed (not allowed) or odd."""
    data = getattr(rd, "data", None)
    return name_text(data, 0) if isinstance(data, bytes) else None


class ClampTTL(Response):
    """Keeps every record's TTL within [low, high] (the ttl rule)."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    async def apply(self, msg: DNSRecord, lookup: Lookup) -> None:
        for rr in records(msg):
            if rr.ttl < self.low:
                rr.ttl = self.low
            elif rr.ttl > self.high:
                rr.ttl = self.high


class MapRcode(Response):
    """Changes the reply's rcode from one value to another (the rcode rule)."""

    on_empty = True

    def __init__(self, old: int, new: int) -> None:
        self.old, self.new = old, new

    async def apply(self, msg: DNSRecord, lookup: Lookup) -> None:
        if msg.header.rcode == self.old:
            msg.header.rcode = self.new


class CnameTarget(Response):
    """Point the first matching CNAME at another name and resolve that name in place of the old target."""

    def __init__(self, mapper: Mapper, qtype: int) -> None:
        self.mapper = mapper
        self.qtype = qtype

    async def apply(self, msg: DNSRecord, lookup: Lookup) -> None:
        for i, rr in enumerate(msg.rr):
            if rr.rtype != TYPE_CNAME or not isinstance(getattr(rr.rdata, "label", None), DNSLabel):
                continue
            old = str(rr.rdata.label).lower()
            new = self.mapper(old)
            if new is None or new == old:
                continue
            if not valid_name(new):
                raise RewriteError(f"invalid CNAME target after rewrite: {new}")
            rd = copy.copy(rr.rdata)
            rd.label = new
            rr.rdata = rd
            # What followed the CNAME described the old target: replace it with the new target's answer.
            del msg.rr[i + 1:]
            try:
                found = await lookup(new, self.qtype)
            except Exception as e:  # the rewritten CNAME alone is still a truthful, if short, answer
                log.error("looking up CNAME target %s: %s", new, e)
                return
            if found is not None:
                msg.rr.extend(copy.copy(r) for r in found.rr if r.rtype != TYPE_OPT)
            return


# -- rules ------------------------------------------------------------------------------------


class State:
    """The question as the rules have left it so far; `spelled` is the name to ask with (client's case first)."""

    __slots__ = ("name", "qclass", "qtype", "spelled")

    def __init__(self, name: str, spelled: str, qtype: int, qclass: int) -> None:
        self.name = name
        self.spelled = spelled
        self.qtype = qtype
        self.qclass = qclass


class Rule:
    """A rule returns None when it does not match, else what to do to the reply (maybe nothing)."""

    __slots__ = ("mode",)

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def rewrite(self, st: State) -> list[Response] | None:
        raise NotImplementedError


class NameRule(Rule):
    """Rewrites the question's name (exact, prefix, suffix, substring, regex)."""

    __slots__ = ("answers", "auto", "rename")

    def __init__(self, mode: str, rename: Mapper, auto: bool, answers: list[Response]) -> None:
        super().__init__(mode)
        self.rename = rename
        self.auto = auto  # map the rewritten name back to the one before (exact, or `answer auto`)
        self.answers = answers  # fixed response rules: answer name/value, or suffix's swap back

    def rewrite(self, st: State) -> list[Response] | None:
        new = self.rename(st.name)
        if new is None:
            return None
        before = st.spelled
        st.name = new
        st.spelled = new
        if not self.auto:
            return self.answers
        back = remap(new, before)
        return [OwnerNames(back), ValueNames(back), *self.answers]


class TypeRule(Rule):
    """Rewrites the question's type."""

    __slots__ = ("new", "old")

    def __init__(self, mode: str, old: int, new: int) -> None:
        super().__init__(mode)
        self.old, self.new = old, new

    def rewrite(self, st: State) -> list[Response] | None:
        if st.qtype != self.old:
            return None
        st.qtype = self.new
        return []


class ClassRule(Rule):
    """Rewrites the question's class."""

    __slots__ = ("new", "old")

    def __init__(self, mode: str, old: int, new: int) -> None:
        super().__init__(mode)
        self.old, self.new = old, new

    def rewrite(self, st: State) -> list[Response] | None:
        if st.qclass != self.old:
            return None
        st.qclass = self.new
        return []


class ReplyRule(Rule):
    """ttl and rcode: the question is left alone; a name match decides whether the reply is changed."""

    __slots__ = ("match", "response")

    def __init__(self, mode: str, match: Callable[[str], bool], response: Response) -> None:
        super().__init__(mode)
        self.match = match
        self.response = response

    def rewrite(self, st: State) -> list[Response] | None:
        return [self.response] if self.match(st.name) else None


class CnameRule(Rule):
    """Rewrites CNAME targets in the reply (the cname rule)."""

    __slots__ = ("mapper",)

    def __init__(self, mode: str, mapper: Mapper) -> None:
        super().__init__(mode)
        self.mapper = mapper

    def rewrite(self, st: State) -> list[Response] | None:
        # As in CoreDNS, a cname rule matches every query: whether it acts is known only from the reply.
        return [CnameTarget(self.mapper, st.qtype)]
