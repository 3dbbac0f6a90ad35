"""RFC 1035 master files: from text to records, each remembered with the file and line it came from.

Supported: `$ORIGIN`, `$TTL`, `$INCLUDE FILE [ORIGIN]` (FILE relative to the including file; the
origin and owner come back afterwards, RFC 1035 §5.1), `@`, relative names, a blank owner meaning
the previous one, parentheses, comments, quoted strings, TTL and class in either order (class IN
only). A record without a TTL gets `$TTL`, else the last TTL written explicitly (RFC 1035), else,
for the SOA itself and after it, the SOA's MINIMUM, else 3600.

The zone-level rules are checked here too, because only here are the lines known: every owner is
in the zone, there is exactly one SOA and it is at the apex.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dnslib import QTYPE, RR, SOA, DNSLabel

from dnsplugins.file.lexer import Entry, Tok, ZoneFileError, entries
from dnsplugins.file.rdata import Labels, RdataError, make_name, parse_ttl, read_rdata
from dnsserver.wire.consts import TYPE_SOA

DEFAULT_TTL = 3600
MAX_INCLUDE_DEPTH = 8  # $INCLUDE cycles end here instead of in a stack overflow
CLASSES = {"IN", "CH", "CS", "HS", "NONE", "ANY"}
# Types that describe a query or a transfer, never data in a zone.
META_TYPES = {"OPT", "TSIG", "TKEY", "IXFR", "AXFR", "MAILA", "MAILB", "ANY", "*"}


class Unchanged(Exception):
    """The file's SOA serial is the one already loaded: stop reading (a reload with nothing to do)."""


@dataclass(slots=True)
class Record:
    """A record read from a zone file, with the file and line it came from."""

    rr: RR
    file: str
    line: int


@dataclass
class ParsedZone:
    """A zone file read: its origin, records and SOA."""

    origin: str
    records: list[Record] = field(default_factory=list)
    soa: Record | None = None

    @property
    def serial(self) -> int:
        assert self.soa is not None
        return int(self.soa.rr.rdata.times[0])


def labels_of(origin: str) -> Labels:
    """`example.org.` as lower-case labels."""
    return tuple(label.lower() for label in DNSLabel(origin).label)


def name_text(labels: Labels) -> str:
    """Labels as the lower-case text the server matches queries on (Request.name's spelling)."""
    return str(DNSLabel(list(labels))).lower()


def read_text(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "surrogateescape")


class _Reader:
    """The state that outlives one file: what $INCLUDEd files share with the file including them."""

    def __init__(self, origin: str, stop_serial: int | None) -> None:
        self.zone = ParsedZone(origin)
        self.apex = labels_of(origin)
        self.stop_serial = stop_serial
        self.dollar_ttl: int | None = None  # $TTL
        self.last_ttl: int | None = None  # the last TTL written on a record
        self.soa_minimum: int | None = None

    def read(self, text: str, file: str, path: str, origin: Labels, depth: int) -> None:
        owner: Labels | None = None
        for e in entries(text, file):
            first = e.tokens[0]
            if not e.blank_owner and not first.quoted and first.text.startswith("$"):
                origin = self._directive(e, file, path, origin, owner, depth)
            else:
                owner = self._record(e, file, origin, owner)

    # -- directives ----------------------------------------------------------------------------

    def _directive(self, e: Entry, file: str, path: str, origin: Labels, owner: Labels | None,
                   depth: int) -> Labels:
        """Apply a $ line; returns the origin in force after it."""
        word, args = e.tokens[0].text.upper(), e.tokens[1:]
        if word == "$ORIGIN":
            _count(file, e, args, 1, 1)
            return _name(file, args[0], origin)
        if word == "$TTL":
            _count(file, e, args, 1, 1)
            self.dollar_ttl = _ttl(file, args[0])
            return origin
        if word == "$INCLUDE":
            _count(file, e, args, 1, 2)
            self._include(e, file, path, args, origin, depth)
            return origin
        raise ZoneFileError(file, e.line, f"unsupported directive {e.tokens[0].text}")

    def _include(self, e: Entry, file: str, path: str, args: list[Tok], origin: Labels, depth: int) -> None:
        if depth >= MAX_INCLUDE_DEPTH:
            raise ZoneFileError(file, e.line, f"$INCLUDE nested more than {MAX_INCLUDE_DEPTH} deep")
        target = args[0].text
        inc_path = target if os.path.isabs(target) else os.path.join(os.path.dirname(path), target)
        inc_file = target if os.path.isabs(target) else os.path.normpath(os.path.join(os.path.dirname(file), target))
        inc_origin = _name(file, args[1], origin) if len(args) == 2 else origin
        try:
            text = read_text(inc_path)
        except (OSError, ValueError) as err:  # ValueError: a NUL byte in the name (open refuses it)
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise ZoneFileError(file, e.line, f"$INCLUDE {target}: {reason}") from None
        self.read(text, inc_file, inc_path, inc_origin, depth + 1)

    # -- records -------------------------------------------------------------------------------

    def _record(self, e: Entry, file: str, origin: Labels, owner: Labels | None) -> Labels:
        toks = e.tokens
        i = 0
        if e.blank_owner:
            if owner is None:
                raise ZoneFileError(file, e.line, "no owner name: the first record must name its owner")
        else:
            owner = _name(file, toks[0], origin)
            i = 1
        ttl: int | None = None
        klass_seen = False
        while i < len(toks) and (ttl is None or not klass_seen):
            tok = toks[i]
            word = tok.text.upper()
            if not klass_seen and not tok.quoted and (word in CLASSES or _numbered(word, "CLASS")):
                if word != "IN" and word != "CLASS1":
                    raise ZoneFileError(file, tok.line, f"class {tok.text} is not supported (only IN)")
                klass_seen = True
            elif ttl is None and tok.text[:1].isdigit():
                ttl = _ttl(file, tok)
            else:
                break
            i += 1
        if i >= len(toks):
            raise ZoneFileError(file, toks[-1].line, "missing record type")
        type_name, rtype = _rtype(file, toks[i])
        try:
            rdata = read_rdata(type_name, toks[i + 1:], origin)
        except RdataError as err:
            line = err.tok.line if err.tok is not None else toks[i].line
            raise ZoneFileError(file, line, f"bad {type_name} record: {err}") from None
        self._check_owner(file, toks[0].line if not e.blank_owner else e.line, owner, type_name)
        if ttl is not None:
            self.last_ttl = ttl
        else:
            ttl = self._default_ttl(rdata if rtype == TYPE_SOA else None)
        rr = RR(DNSLabel(list(owner)), rtype, 1, ttl, rdata)
        record = Record(rr, file, e.line)
        if rtype == TYPE_SOA:
            self._soa(record)
        self.zone.records.append(record)
        return owner

    def _default_ttl(self, soa: SOA | None) -> int:
        if self.dollar_ttl is not None:
            return self.dollar_ttl
        if self.last_ttl is not None:
            return self.last_ttl
        if soa is not None:
            return int(soa.times[4])
        return self.soa_minimum if self.soa_minimum is not None else DEFAULT_TTL

    def _check_owner(self, file: str, line: int, owner: Labels, type_name: str) -> None:
        apex = self.apex
        if len(owner) < len(apex) or owner[len(owner) - len(apex):] != apex:
            raise ZoneFileError(file, line, f'out-of-zone record: "{name_text(owner)}" is not in zone '
                                            f'"{self.zone.origin}"')
        if type_name == "SOA" and owner != apex:
            raise ZoneFileError(file, line, f'SOA record for "{name_text(owner)}" is not at the zone apex '
                                            f'"{self.zone.origin}"')

    def _soa(self, record: Record) -> None:
        first = self.zone.soa
        if first is not None:
            raise ZoneFileError(record.file, record.line,
                                f"second SOA record (the first is at {first.file}:{first.line})")
        self.zone.soa = record
        times = record.rr.rdata.times
        self.soa_minimum = int(times[4])
        if self.stop_serial is not None and int(times[0]) == self.stop_serial:
            raise Unchanged()


def _count(file: str, e: Entry, args: list[Tok], lo: int, hi: int) -> None:
    if not lo <= len(args) <= hi:
        want = str(lo) if lo == hi else f"{lo} or {hi}"
        raise ZoneFileError(file, e.line, f"{e.tokens[0].text} takes {want} argument(s), got {len(args)}")


def _name(file: str, tok: Tok, origin: Labels) -> Labels:
    try:
        return make_name(tok.text, origin)
    except ValueError as err:
        raise ZoneFileError(file, tok.line, f"bad name {tok.text!r}: {err}") from None


def _ttl(file: str, tok: Tok) -> int:
    try:
        return parse_ttl(tok.text)
    except ValueError:
        raise ZoneFileError(file, tok.line, f"bad TTL {tok.text!r}") from None


def _numbered(word: str, prefix: str) -> bool:
    return word.startswith(prefix) and word[len(prefix):].isdigit() and word[len(prefix):].isascii()


def _rtype(file: str, tok: Tok) -> tuple[str, int]:
    word = tok.text.upper()
    if _numbered(word, "TYPE") and int(word[4:]) < 65536:
        rtype = int(word[4:])
        known = QTYPE.get(rtype)
        name = known if isinstance(known, str) and not known.isdigit() else word  # dnslib: "65280"
    else:
        code = QTYPE.reverse.get(word)
        if code is None or tok.quoted:
            raise ZoneFileError(file, tok.line, f"unknown record type {tok.text!r}")
        name, rtype = word, int(code)
    if name in META_TYPES:
        raise ZoneFileError(file, tok.line, f"type {name} cannot be a record in a zone")
    return name, rtype


def parse_text(text: str, file: str, origin: str, path: str | None = None,
               stop_serial: int | None = None) -> ParsedZone:
    """Parse zone-file `text` (named `file` in errors; `path` locates $INCLUDEs) for zone `origin`.

    Raises ZoneFileError (FILE:LINE) for any mistake, and Unchanged when `stop_serial` is given and
    the SOA carries it.
    """
    reader = _Reader(origin, stop_serial)
    reader.read(text, file, path or file, reader.apex, 0)
    if reader.zone.soa is None:
        raise ZoneFileError(file, 1, f'no SOA record for zone "{origin}"')
    return reader.zone


def parse_file(path: str, file: str, origin: str, stop_serial: int | None = None) -> ParsedZone:
    """Read and parse the zone file at `path` (shown as `file`). OSError if it cannot be read."""
    return parse_text(read_text(path), file, origin, path, stop_serial)
