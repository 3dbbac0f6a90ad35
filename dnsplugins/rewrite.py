"""rewrite: change the question before the rest of the chain sees it, and map the reply back.

The client never notices: whatever the rules did to the question, the reply carries the question as
the client asked it, and (with response rules) the names in the reply are mapped back as well.
`rewrite` runs before `cache`, so the cache stores answers under the rewritten question.

## Syntax

```
rewrite [continue|stop] FIELD [TYPE] (FROM TO | TTL) [OPTIONS]
rewrite [continue|stop] {
    FIELD [TYPE] (FROM TO | TTL) [OPTIONS]
}
```

* `stop` (the default) ends the rule list at this rule when it matches; `continue` goes on with the
  next rule, which then sees the question as this rule left it. Rules are tried in Corefile order,
  and the directive may be given any number of times in a block.
* The block form holds one rule spread over lines: its lines are read as if they were written on
  the directive's line (`name ...` on one line, `answer ...` on the next).
* **FIELD** is what is rewritten:
  * `name [TYPE] FROM TO [OPTIONS]`: the query name. TYPE is how FROM matches the (lower-cased)
    name: `exact` (the default), `prefix`, `suffix`, `substring` or `regex`. For the first four,
    FROM and TO are made lower case and fully qualified (so `prefix foo bar` matches the label
    `foo.` at the start and puts `bar.` in its place); `substring` replaces every occurrence. A
    `regex` FROM is a regular expression searched for in the name; TO replaces the whole name and
    may use `{0}` (the whole match), `{1}`, `{2}`, ... for the groups.
  * `type FROM TO`: the query type (`rewrite type ANY HINFO`).
  * `class FROM TO`: the query class (`IN`, `CH`, `HS`, `CS`, `NONE`, `ANY`). A block refuses
    non-IN queries before any plugin runs unless `chaos` or `forward` is loaded, so
    `rewrite class CH IN` needs one of those in the block.
  * `ttl [TYPE] NAME TTL`: when the query name matches NAME (TYPE as for `name`), every TTL in the
    reply is set to TTL, or clamped into it when TTL is a range: `MIN-MAX`, `MIN-` (no upper
    bound), `-MAX` (from 0).
  * `rcode [TYPE] NAME FROM TO`: when the query name matches NAME and the reply's RCODE is FROM,
    it becomes TO. FROM and TO are names (`SERVFAIL`) or numbers; TO must fit the header (0-15).
  * `cname [TYPE] FROM TO`: a CNAME in the answer whose target matches FROM (TYPE as for `name`,
    default `exact`) points to TO instead, and TO is looked up (same type, through the rest of
    this block's chain) to replace what followed the CNAME. This rule matches every query.
  * `edns0` is not supported yet and is refused.
* **OPTIONS** (for `name` only, after an explicit TYPE): how names in the reply are mapped back.
  * `answer auto`: names equal to or under the rewritten name become the name asked again, in
    owner names and in the names inside records. For `suffix`, any name ending in TO gets FROM back
    in its place. An `exact` rule always does this, with or without the option.
  * `answer name FROM TO`: owner names matching the regular expression FROM are replaced by TO.
  * `answer value FROM TO`: the same for the names inside CNAME, DNAME, SOA (primary server),
    SRV, MX, NAPTR, NS and PTR records.

  Several options may follow one another; after the first, the word `answer` may be left out.
  `answer auto` cannot be combined with `answer name`.

Response rules apply to the answer, authority and additional sections, and the rules that matched
are undone in reverse order, so a chain of `continue` rules unwinds back to the name asked. Names
are matched in lower case (a regular expression sees `foo.example.org.`, trailing dot included, so
write patterns in lower case); the question in the reply, and a name mapped back to it, keep the
client's spelling. A rule that produces an invalid name (an empty label, a label over 63 bytes, a
name over 255) makes the query fail with SERVFAIL, and the reason is logged.

Blocks that use `rewrite` are not answered from the cache's stored wire answers without running
the chain: a rewritten query must always be rewritten.

## Examples

Serve a Kubernetes service under a second name; the answer says `foo.example.com.`:

```corefile
. {
    rewrite name exact foo.example.com foo.default.svc.cluster.local
    hosts {
        10.96.0.10 foo.default.svc.cluster.local
    }
}
```

Map a whole domain onto a namespace and back, and keep answers for it at least 30 seconds:

```corefile
. {
    rewrite continue name regex (.*)\\.my\\.domain {1}.default.svc.cluster.local answer auto
    rewrite ttl suffix default.svc.cluster.local 30-
    whoami
}
```

The block form, with an explicit answer mapping:

```corefile
. {
    rewrite stop {
        name regex (.*)-(us-west-1)\\.example\\.org {1}.service.{2}.consul
        answer name (.*)\\.service\\.(us-west-1)\\.consul {1}-{2}.example.org
    }
    whoami
}
```
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Awaitable, Callable, Iterator

from dnslib import QTYPE, RD, RR, DNSLabel, DNSRecord

from corefile import CorefileError, Dispenser, Token, normalize_zone
from dnsserver.plugin import Next, Plugin, SetupContext
from dnsserver.request import Request
from dnsserver.wire.consts import SERVFAIL, TYPE_CNAME, TYPE_DNAME, TYPE_OPT

log = logging.getLogger("portolan")

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
    if not isinstance(data, bytes):
        return None
    labels: list[str] = []
    i = 0
    while i < len(data):
        n = data[i]
        if n == 0:
            return ".".join(labels) + "." if labels else "."
        if n & 0xC0 or i + 1 + n > len(data):
            return None
        labels.append(data[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    return None


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
                log.error("[ERROR] plugin/rewrite: looking up CNAME target %s: %s", new, e)
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


# -- the plugin -------------------------------------------------------------------------------


class Rewrite(Plugin):
    """`rewrite`: changes queries before the plugins after it see them, and their replies back."""

    name = "rewrite"
    # fast_safe stays False: a stored answer for a question a rule rewrites must never be sent as is.

    def __init__(self, rules: list[Rule], ctx: SetupContext | None = None) -> None:
        self.rules = rules
        self.ctx = ctx

    def _rewrite(self, req: Request, st: State) -> list[Response] | None:
        """Apply the rules to the question in `st`; the response rules that undo them, None if none matched."""
        responses: list[Response] = []
        matched = False
        for rule in self.rules:
            before = st.name
            got = rule.rewrite(st)
            if got is None:
                continue
            matched = True
            if st.name != before and not valid_name(st.name):
                self._invalid(req, st.name)
            responses.extend(got)
            if rule.mode == STOP:
                break
        return responses if matched else None

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        st = State(req.name, req.qname, req.qtype, req.qclass)
        responses = self._rewrite(req, st)
        if responses is None:
            return await next(req)

        if st.name == req.name and st.qtype == req.qtype and st.qclass == req.qclass:
            sub = req
        else:
            sub = req.clone_for(st.spelled, st.qtype, st.qclass)
        reply = await next(sub)
        if sub is not req and sub.answered_by is not None:
            req.answered_by = sub.answered_by  # the metrics label names who answered, not rewrite
        if not responses:
            return reply  # the server puts the client's question back
        if reply is None:
            if not any(r.on_empty for r in responses):
                return None
            reply = sub.reply(SERVFAIL)  # what the server would send, so an rcode rule can change it

        async def lookup(name: str, qtype: int) -> DNSRecord | None:
            return await next(sub.clone_for(name, qtype))

        msg = private_copy(reply)
        # Undo in reverse: the last rule applied is the first undone, so a chain of rules unwinds.
        for r in reversed(responses):
            await r.apply(msg, lookup)
        return msg

    def _invalid(self, req: Request, name: str) -> None:
        # The errors plugin, when loaded, logs the raised error itself; otherwise say it here, once.
        block = self.ctx.block if self.ctx is not None else None
        if block is None or not block.logs_errors:
            log.error("[ERROR] plugin/rewrite: invalid name after rewrite: %s (query %s %s)",
                      name, req.qname, req.type_name)
        raise RewriteError(f"invalid name after rewrite: {name}")


def private_copy(reply: DNSRecord) -> DNSRecord:
    """A reply whose header and records may be changed: records are shared with other replies."""
    msg = DNSRecord(header=copy.copy(reply.header), questions=list(reply.questions))
    msg.rr = [copy.copy(r) for r in reply.rr]
    msg.auth = [copy.copy(r) for r in reply.auth]
    msg.ar = [r if r.rtype == TYPE_OPT else copy.copy(r) for r in reply.ar]
    return msg


# -- parsing ----------------------------------------------------------------------------------


def err(tok: Token, message: str) -> CorefileError:
    return CorefileError(tok.file, tok.line, f"plugin/rewrite: {message}")


def compile_regex(tok: Token, what: str) -> re.Pattern[str]:
    if len(tok.text) > MAX_REGEX_LEN:
        raise err(tok, f"regex pattern too long ({len(tok.text)} characters, at most {MAX_REGEX_LEN})")
    try:
        return re.compile(tok.text)
    except re.error:
        raise err(tok, f"{what}: {tok.text}") from None


def check_groups(pattern: re.Pattern[str], source: Token, target: Token, prefix: str = "") -> None:
    if groups_used(target.text) > pattern.groups:
        raise err(target, f"{prefix}the rewrite regex pattern ({target.text}) uses more subexpressions than "
                          f"its corresponding matching regex pattern ({source.text})")


def parse_name(mode: str, field: Token, args: list[Token]) -> Rule:
    if len(args) < 2:
        raise err(field, "too few arguments for a name rule")
    if len(args) == 2:
        kind, source, target = EXACT, args[0], args[1]
    else:
        kind, source, target = args[0].text.lower(), args[1], args[2]
        if kind not in MATCH_TYPES:
            raise err(args[0], "name rule supports only exact, prefix, suffix, substring, and regex name "
                               f"matching, received: {args[0].text}")
    auto, answers = parse_answers(kind, args[3:]) if len(args) > 3 else (False, [])
    if kind == REGEX:
        pattern = compile_regex(source, "invalid regex matching pattern")
        check_groups(pattern, source, target)
        return NameRule(mode, renamer(kind, "", normalize_zone(target.text), pattern), auto, answers)
    src, dst = normalize_zone(source.text), normalize_zone(target.text)
    if kind == SUFFIX:
        # A suffix is undone by swapping the suffixes back, wherever the new one appears.
        if auto:
            back = swap_suffix(dst, src)
            answers = [OwnerNames(back), ValueNames(back), *answers]
        return NameRule(mode, renamer(kind, src, dst, None), False, answers)
    return NameRule(mode, renamer(kind, src, dst, None), auto or kind == EXACT, answers)


def parse_answers(kind: str, toks: list[Token]) -> tuple[bool, list[Response]]:
    """`answer (auto | name FROM TO | value FROM TO) [[answer] ...]...` after a name rule."""
    if len(toks) < 2:
        raise err(toks[0], f"invalid arguments for {kind} rule")
    auto = False
    answers: list[Response] = []
    explicit_names = 0
    i = 0
    while i < len(toks):
        if i == 0 and toks[0].text.lower() != "answer":
            raise err(toks[0], f"exceeded the number of arguments for a non-answer rule argument for {kind} rule")
        if toks[i].text.lower() == "answer":
            i += 1
            if i == len(toks):
                raise err(toks[i - 1], f"type missing for answer rule for {kind} rule")
        what = toks[i]
        option = what.text.lower()
        i += 1
        if option == "auto":
            auto = True
            continue
        if option not in ("name", "value"):
            raise err(what, f'invalid type "{what.text}" for answer rule for {kind} rule')
        if len(toks) - i < 2:
            raise err(what, f"{option} answer rule for {kind} rule: 2 arguments required")
        source, target = toks[i], toks[i + 1]
        i += 2
        pattern = compile_regex(source, f"{option} answer rule for {kind} rule: invalid regex matching pattern")
        check_groups(pattern, source, target, f"{option} answer rule for {kind} rule: ")
        mapper = by_regex(pattern, normalize_zone(target.text))
        if option == "name":
            answers.append(OwnerNames(mapper))
            explicit_names += 1
        else:
            answers.append(ValueNames(mapper))
    if auto and explicit_names:
        raise err(toks[0], "auto name answer rule cannot be combined with explicit name answer rules")
    return auto, answers


def type_code(tok: Token) -> int:
    name = tok.text.upper()
    code: int | None = QTYPE.reverse.get(name, EXTRA_TYPES.get(name))
    if code is None:
        raise err(tok, f'invalid type "{name}"')
    return code


def parse_type(mode: str, field: Token, args: list[Token]) -> Rule:
    if len(args) != 2:
        raise err(field, "type rules must have exactly two arguments")
    return TypeRule(mode, type_code(args[0]), type_code(args[1]))


def parse_class(mode: str, field: Token, args: list[Token]) -> Rule:
    if len(args) != 2:
        raise err(field, "class rules must have exactly two arguments")
    codes = []
    for tok in args:
        code = CLASSES.get(tok.text.upper())
        if code is None:
            raise err(tok, f'invalid class "{tok.text.upper()}"')
        codes.append(code)
    return ClassRule(mode, codes[0], codes[1])


def name_matcher(field: str, kind_tok: Token | None, value: Token) -> Callable[[str], bool]:
    """The NAME test of a ttl or rcode rule; without a TYPE it is an exact match."""
    kind = kind_tok.text.lower() if kind_tok is not None else EXACT
    if kind not in MATCH_TYPES:
        assert kind_tok is not None
        raise err(kind_tok, f"{field} rule supports only exact, prefix, suffix, substring, and regex name matching")
    if kind == REGEX:
        return matcher(kind, "", compile_regex(value, f"invalid regex pattern in a {field} rule"))
    return matcher(kind, normalize_zone(value.text), None)


def u32(text: str) -> int | None:
    # Only plain ASCII digits, as Go's ParseUint: int() would also take "+5", "1_0" and other scripts.
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= U32_MAX else None


def ttl_range(text: str) -> tuple[int, int] | None:
    """SECONDS, MIN-MAX, MIN- or -MAX as (low, high); None if invalid (a bare "-" included)."""
    parts = text.split("-")
    if len(parts) == 1:
        n = u32(parts[0])
        return (n, n) if n is not None else None
    if len(parts) != 2 or parts == ["", ""]:
        return None
    low = u32(parts[0]) if parts[0] else 0
    high = u32(parts[1]) if parts[1] else TTL_NO_MAX
    if low is None or high is None or low > high:
        return None
    return low, high


def parse_ttl(mode: str, field: Token, args: list[Token]) -> Rule:
    if len(args) < 2:
        raise err(field, f"too few ({len(args)}) arguments for a ttl rule")
    if len(args) > 3:
        raise err(args[3], "too many arguments for a ttl rule")
    value = args[-1]
    bounds = ttl_range(value.text)
    if bounds is None:
        raise err(value, f"invalid TTL '{value.text}' for a ttl rule")
    kind = args[0] if len(args) == 3 else None
    return ReplyRule(mode, name_matcher("ttl", kind, args[-2]), ClampTTL(*bounds))


def rcode_code(tok: Token, what: str) -> int:
    text = tok.text
    n = u32(text)
    code = n if n is not None and n <= 23 else RCODES.get(text.upper())
    if code is None:
        raise err(tok, f"invalid {what} RCODE '{text}' for a rcode rule")
    return code


def parse_rcode(mode: str, field: Token, args: list[Token]) -> Rule:
    if len(args) < 3:
        raise err(field, f"too few ({len(args)}) arguments for a rcode rule")
    if len(args) > 4:
        raise err(args[4], "too many arguments for a rcode rule")
    old = rcode_code(args[-2], "matching")
    new = rcode_code(args[-1], "replacement")
    if new > 15:
        # Codes above 15 live partly in the OPT record; a rewritten header cannot carry them.
        raise err(args[-1], f"replacement RCODE '{args[-1].text}' does not fit the header (0-15)")
    kind = args[0] if len(args) == 4 else None
    return ReplyRule(mode, name_matcher("rcode", kind, args[-3]), MapRcode(old, new))


def parse_cname(mode: str, field: Token, args: list[Token]) -> Rule:
    if len(args) < 2:
        raise err(field, f"too few ({len(args)}) arguments for a cname rule")
    if len(args) > 3:
        raise err(args[3], "too many arguments for a cname rule")
    kind = args[0].text.lower() if len(args) == 3 else EXACT
    if kind not in MATCH_TYPES:
        raise err(args[0], f"unknown cname rewrite type: {kind}")
    source, target = args[-2], args[-1]
    if kind == REGEX:
        pattern = compile_regex(source, "invalid regex pattern in a cname rule")
        check_groups(pattern, source, target)
        return CnameRule(mode, renamer(kind, "", target.text.lower(), pattern))
    if kind == EXACT:  # a target is always fully qualified, so an exact name must be too
        return CnameRule(mode, renamer(kind, normalize_zone(source.text), normalize_zone(target.text), None))
    # CoreDNS takes prefix, suffix and substring as written (lower-cased): `prefix chat.openai.com`
    # must match the target chat.openai.com.cdn.example.net.
    return CnameRule(mode, renamer(kind, source.text.lower(), target.text.lower(), None))


def parse_edns0(mode: str, field: Token, args: list[Token]) -> Rule:
    raise err(field, "edns0 rules are not supported yet")


FIELDS: dict[str, Callable[[str, Token, list[Token]], Rule]] = {
    "name": parse_name, "type": parse_type, "class": parse_class, "ttl": parse_ttl, "rcode": parse_rcode,
    "cname": parse_cname, "edns0": parse_edns0,
}


def new_rule(head: Token, toks: list[Token]) -> Rule:
    """One rule from the words of one directive (its line, or its block's lines run together)."""
    if not toks:
        raise err(head, "no rule type specified for rewrite")
    mode = STOP
    first = toks[0].text.lower()
    if first in (STOP, CONTINUE):
        if len(toks) < 2:
            raise err(toks[0], f"{first} rule must begin with a rule type")
        mode = first
        toks = toks[1:]
    field = toks[0]
    kind = field.text.lower()
    if kind == "answer":
        raise err(field, "response rewrites must begin with a name rule")
    build = FIELDS.get(kind)
    if build is None:
        raise err(field, f'invalid rule type "{field.text}"')
    return build(mode, field, toks[1:])


def parse(d: Dispenser) -> list[Rule]:
    rules: list[Rule] = []
    while d.next():
        head = d.token()
        toks: list[Token] = []
        while d.next_arg():
            toks.append(d.token())
        if d.next_block():
            if len(toks) >= 2:
                # CoreDNS reads a block only when the line itself holds no rule; say so rather than guess.
                raise err(head, "a rule written on the directive's line cannot also have a block")
            while True:
                toks.append(d.token())
                while d.next_arg():
                    toks.append(d.token())
                if not d.next_block():
                    break
        rules.append(new_rule(head, toks))
    return rules


def setup(d: Dispenser, ctx: SetupContext) -> Rewrite:
    return Rewrite(parse(d), ctx)
