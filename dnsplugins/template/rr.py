"""One resource record from the text a template renders, read as Go's dns.NewRR reads it: `OWNER [TTL]
[CLASS] TYPE RDATA` (TTL and class in either order), names relative to the root, TTL 3600 and class IN
when left out. The record types are the file plugin's (its zone-file lexer and rdata readers)."""

from __future__ import annotations

from dnslib import QTYPE, RR, DNSLabel

from dnsplugins.file.lexer import ZoneFileError, entries
from dnsplugins.file.rdata import RdataError, make_name, parse_ttl, read_rdata

DEFAULT_TTL = 3600
CLASSES = {"IN": 1, "CS": 2, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255}


class RRError(ValueError):
    """Rendered text that is not one resource record."""


def _class(word: str) -> int | None:
    if word in CLASSES:
        return CLASSES[word]
    if word.startswith("CLASS") and word[5:].isdigit() and word[5:].isascii() and int(word[5:]) < 65536:
        return int(word[5:])
    return None


def parse_rr(text: str) -> RR:
    """The record `text` holds. Raises RRError."""
    try:
        found = list(entries(text, "template"))
    except ZoneFileError as e:
        raise RRError(e.message) from None
    if len(found) != 1 or found[0].blank_owner:
        raise RRError(f"not one record: {text!r}")
    toks = found[0].tokens
    try:
        owner = make_name(toks[0].text, ())
    except ValueError as e:
        raise RRError(f"bad owner name {toks[0].text!r}: {e}") from None
    ttl: int | None = None
    klass: int | None = None
    i = 1
    while i < len(toks) and (ttl is None or klass is None):
        word = toks[i].text.upper()
        if klass is None and _class(word) is not None:
            klass = _class(word)
        elif ttl is None and word[:1].isdigit():
            try:
                ttl = parse_ttl(word)
            except ValueError:
                raise RRError(f"bad TTL {toks[i].text!r}") from None
        else:
            break
        i += 1
    if i >= len(toks):
        raise RRError(f"no record type in {text!r}")
    type_name = toks[i].text.upper()
    rtype = QTYPE.reverse.get(type_name)
    if rtype is None:
        raise RRError(f"unknown record type {toks[i].text!r}")
    try:
        rdata = read_rdata(type_name, toks[i + 1 :], ())
    except RdataError as e:
        raise RRError(f"bad {type_name} record: {e}") from None
    return RR(
        DNSLabel(list(owner)),
        int(rtype),
        klass if klass is not None else 1,
        ttl if ttl is not None else DEFAULT_TTL,
        rdata,
    )
