"""Record data from master-file tokens, one reader per type.

The common types are read here, strictly (an A record must be a dotted quad, a port must fit in
16 bits), because dnslib's own `fromZone` readers accept almost anything and leave the mistake
for the wire. Names in rdata are made absolute against the current origin and lower-cased, as
CoreDNS stores them. Rarer types with a dnslib class (DNSSEC, TLSA, SSHFP, NAPTR, HTTPS, LOC, RP)
go through dnslib's reader; any type may use the RFC 3597 generic form `\\# LENGTH HEX`.
"""

from __future__ import annotations

import binascii
import ipaddress
import re
from collections.abc import Callable

from dnslib import AAAA, CAA, CNAME, MX, NS, PTR, RD, SOA, SRV, TXT, A, DNSLabel
from dnslib.dns import RDMAP
from dnslib.label import DNSBuffer

import dnsserver.dnslib_ext  # noqa: F401  (registers HINFO into dnslib)
from dnsplugins.file.lexer import Tok, split_labels, unescape

Labels = tuple[bytes, ...]

TTL_MAX = 2**31 - 1  # RFC 2181 §8
_TTL_PART = re.compile(r"(\d+)([smhdw]?)", re.I)
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class RdataError(ValueError):
    """Bad record data; `tok` is the token at fault, for the line number."""

    def __init__(self, message: str, tok: Tok | None = None) -> None:
        super().__init__(message)
        self.tok = tok


def parse_ttl(text: str) -> int:
    """A TTL in seconds: plain digits, or BIND's units (`1h30m`, `2d`, `1w`). Raises ValueError."""
    pos, total = 0, 0
    if not text or not text[0].isdigit():
        raise ValueError(text)
    while pos < len(text):
        m = _TTL_PART.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(text)
        total += int(m.group(1)) * _TTL_UNITS[m.group(2).lower()]
        pos = m.end()
    if total > TTL_MAX:
        raise ValueError(text)
    return total


def make_name(text: str, origin: Labels) -> Labels:
    """A domain name token as absolute, lower-cased labels: `@` is the origin, relative names get it."""
    if text == "@":
        return origin
    labels, absolute = split_labels(text)
    full = tuple(label.lower() for label in labels) + (() if absolute else origin)
    for label in full:
        if len(label) > 63:
            raise ValueError("label longer than 63 octets")
    if sum(len(label) + 1 for label in full) + 1 > 255:
        raise ValueError("name longer than 255 octets")
    return full


def _name(tok: Tok, origin: Labels) -> DNSLabel:
    try:
        return DNSLabel(list(make_name(tok.text, origin)))
    except ValueError as e:
        raise RdataError(f"bad name {tok.text!r}: {e}", tok) from None


def _uint(tok: Tok, bits: int, what: str) -> int:
    if not tok.text.isdigit() or not tok.text.isascii() or int(tok.text) >= 1 << bits:
        raise RdataError(f"bad {what} {tok.text!r}", tok)
    return int(tok.text)


def _timer(tok: Tok, what: str) -> int:
    try:
        return parse_ttl(tok.text)
    except ValueError:
        raise RdataError(f"bad {what} {tok.text!r}", tok) from None


def _want(toks: list[Tok], n: int) -> None:
    if len(toks) != n:
        raise RdataError(f"want {n} field{'s' if n != 1 else ''}, got {len(toks)}",
                         toks[n] if len(toks) > n else None)


def _a(toks: list[Tok], origin: Labels) -> RD:
    _want(toks, 1)
    try:
        return A(str(ipaddress.IPv4Address(toks[0].text)))
    except ValueError:
        raise RdataError(f"bad IPv4 address {toks[0].text!r}", toks[0]) from None


def _aaaa(toks: list[Tok], origin: Labels) -> RD:
    _want(toks, 1)
    try:
        return AAAA(str(ipaddress.IPv6Address(toks[0].text)))
    except ValueError:
        raise RdataError(f"bad IPv6 address {toks[0].text!r}", toks[0]) from None


def _one_name(cls: Callable[[DNSLabel], RD]) -> Callable[[list[Tok], Labels], RD]:
    def read(toks: list[Tok], origin: Labels) -> RD:
        _want(toks, 1)
        return cls(_name(toks[0], origin))
    return read


def _mx(toks: list[Tok], origin: Labels) -> RD:
    _want(toks, 2)
    return MX(_name(toks[1], origin), _uint(toks[0], 16, "preference"))


def _srv(toks: list[Tok], origin: Labels) -> RD:
    _want(toks, 4)
    return SRV(_uint(toks[0], 16, "priority"), _uint(toks[1], 16, "weight"), _uint(toks[2], 16, "port"),
               _name(toks[3], origin))


def _soa(toks: list[Tok], origin: Labels) -> RD:
    _want(toks, 7)
    serial = _uint(toks[2], 32, "serial")
    timers = [_timer(t, what) for t, what in zip(toks[3:], ("refresh", "retry", "expire", "minimum"), strict=True)]
    return SOA(_name(toks[0], origin), _name(toks[1], origin), (serial, *timers))


def _strings(toks: list[Tok]) -> list[bytes]:
    if not toks:
        raise RdataError("want at least one character-string")
    out = []
    for t in toks:
        try:
            s = unescape(t.text)
        except ValueError as e:
            raise RdataError(str(e), t) from None
        if len(s) > 255:
            raise RdataError("character-string longer than 255 octets", t)
        out.append(s)
    return out


def _txt(toks: list[Tok], origin: Labels) -> RD:
    return TXT(_strings(toks))


def _hinfo(toks: list[Tok], origin: Labels) -> RD:
    _want(toks, 2)
    return RDMAP["HINFO"](_strings(toks))


def _caa(toks: list[Tok], origin: Labels) -> RD:
    _want(toks, 3)
    flags = _uint(toks[0], 8, "flags")
    tag = toks[1].text
    if not tag.isalnum() or not tag.isascii():
        raise RdataError(f"bad CAA tag {tag!r}", toks[1])
    return CAA(flags, tag, _strings(toks[2:])[0].decode("utf-8", "surrogateescape"))


def _generic(type_name: str, toks: list[Tok]) -> RD:
    """RFC 3597 `\\# LENGTH HEX...`, read through the type's wire parser so the result is typed."""
    if len(toks) < 2:
        raise RdataError("generic rdata needs '\\# LENGTH [HEX...]'")
    length = _uint(toks[1], 16, "length")
    try:
        data = binascii.unhexlify("".join(t.text for t in toks[2:]))
    except (binascii.Error, ValueError):
        raise RdataError("bad hex in generic rdata", toks[2] if len(toks) > 2 else toks[1]) from None
    if len(data) != length:
        raise RdataError(f"generic rdata is {len(data)} octets, not {length}", toks[1])
    cls = RDMAP.get(type_name, RD)
    try:
        return cls.parse(DNSBuffer(data), length) if data else RD(b"")
    except Exception as e:
        raise RdataError(f"bad generic rdata: {e}", toks[1]) from None


READERS: dict[str, Callable[[list[Tok], Labels], RD]] = {
    "A": _a, "AAAA": _aaaa, "NS": _one_name(NS), "CNAME": _one_name(CNAME), "PTR": _one_name(PTR),
    "MX": _mx, "SRV": _srv, "SOA": _soa, "TXT": _txt, "SPF": _txt, "HINFO": _hinfo, "CAA": _caa,
}
# Read with dnslib's own readers (their fields are numbers, hex, base64 or absolute names).
DNSLIB_TYPES = ("DS", "DNSKEY", "RRSIG", "NSEC", "TLSA", "SSHFP", "NAPTR", "HTTPS", "LOC", "RP")


def read_rdata(type_name: str, toks: list[Tok], origin: Labels) -> RD:
    """The rdata of a `type_name` record from its tokens. Raises RdataError."""
    if toks and toks[0].text == "\\#" and not toks[0].quoted:
        return _generic(type_name, toks)
    reader = READERS.get(type_name)
    if reader is not None:
        return reader(toks, origin)
    if type_name in DNSLIB_TYPES:
        try:
            return RDMAP[type_name].fromZone([t.text for t in toks], DNSLabel(list(origin)))
        except Exception as e:  # dnslib raises whatever its parsing hits: IndexError, ValueError, ...
            raise RdataError(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None
    raise RdataError(f"type {type_name} is only supported in the generic form '\\# LENGTH HEX'")
