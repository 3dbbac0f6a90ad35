"""Read-only views of a query and its reply in wire form, with the attributes `log` reads.

On the hot path there is no Request or DNSRecord; observers such as `log` still need the name,
type, flags and what kind of reply went out. These views compute each lazily from the bytes, so a
hit that nobody logs costs nothing, and a logged one costs a name decode, not a parse.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Protocol

from dnslib import QTYPE

from dnsserver.wire.names import name_end, name_text
from dnsserver.wire.query import FastQuery, size_limit

_U16 = struct.Struct("!H")

# Metadata of a query ({/LABEL} in log's formats): a value, or a function that works it out when it is read.
Metadata = dict[str, str | Callable[[], str]]


def meta_value(meta: Metadata, label: str) -> str:
    """The value of metadata `label`, "" when it is not set. A function is worked out when first read, once:
    later readers get the same text."""
    v = meta.get(label, "")
    if not isinstance(v, str):
        v = meta[label] = v()
    return v


class HeaderView(Protocol):
    """The header fields observers read: a dnslib header or `_Header`."""

    @property
    def id(self) -> int: ...

    @property
    def opcode(self) -> int: ...


class MessageView(Protocol):
    """A message as observers read it: only its header."""

    @property
    def header(self) -> HeaderView: ...


class QueryView(Protocol):
    """What observers (log, errors) read of a query: a Request, or a WireQuery for a hot-path answer."""

    @property
    def qname(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def type_name(self) -> str: ...

    @property
    def qtype(self) -> int: ...

    @property
    def qclass(self) -> int: ...

    @property
    def proto(self) -> str: ...

    @property
    def wire_size(self) -> int: ...

    @property
    def client_ip(self) -> str: ...

    @property
    def client_port(self) -> int: ...

    @property
    def local_ip(self) -> str: ...

    @property
    def do(self) -> bool: ...

    @property
    def max_size(self) -> int: ...

    @property
    def msg(self) -> MessageView: ...

    @property
    def meta(self) -> Metadata: ...


class _Header:
    __slots__ = ("aa", "ad", "cd", "id", "opcode", "qr", "ra", "rcode", "rd", "tc", "z")

    def __init__(self, wire: bytes) -> None:
        flags = _U16.unpack_from(wire, 2)[0]
        self.id = _U16.unpack_from(wire, 0)[0]
        self.qr, self.opcode = flags >> 15 & 1, flags >> 11 & 0xF
        self.aa, self.tc, self.rd, self.ra = flags >> 10 & 1, flags >> 9 & 1, flags >> 8 & 1, flags >> 7 & 1
        self.z, self.ad, self.cd, self.rcode = flags >> 6 & 1, flags >> 5 & 1, flags >> 4 & 1, flags & 0xF


class _Msg:
    __slots__ = ("header",)

    def __init__(self, wire: bytes) -> None:
        self.header = _Header(wire)


class WireQuery:
    """The attributes of a Request that observers use, for a query answered on the hot path."""

    def __init__(self, data: bytes, q: FastQuery, client: tuple[str, int], proto: str, local_ip: str = "") -> None:
        self.data = data
        self.qtype = q.qtype
        self.qclass = 1  # the hot path serves IN only
        self.proto = proto
        self.wire_size = len(data)
        self.client_ip, self.client_port = client[0], client[1]
        self.family = 2 if ":" in client[0] else 1
        self.local_ip = local_ip
        self.do = q.do
        self.udp_size = q.udp_size
        self.max_size = size_limit(q, proto)
        self.meta: Metadata = {}
        self._qname: str | None = None

    @property
    def qname(self) -> str:
        if self._qname is None:
            # Question names on the hot path are never compressed: the name always reads.
            self._qname = name_text(self.data) or "."
        return self._qname

    @property
    def name(self) -> str:
        return self.qname.lower()

    @property
    def type_name(self) -> str:
        name: str = QTYPE.get(self.qtype, f"TYPE{self.qtype}")
        return name

    @property
    def msg(self) -> _Msg:
        return _Msg(self.data)


class _Rec:
    __slots__ = ("rtype",)

    def __init__(self, rtype: int) -> None:
        self.rtype = rtype


class WireReply:
    """The header and the record types of each section of a reply in wire form."""

    def __init__(self, wire: bytes) -> None:
        self.wire = wire
        self.header = _Header(wire)
        self._sections: tuple[list[_Rec], list[_Rec], list[_Rec]] | None = None

    def _walk(self) -> tuple[list[_Rec], list[_Rec], list[_Rec]]:
        if self._sections is None:
            w = self.wire
            counts = [_U16.unpack_from(w, o)[0] for o in (6, 8, 10)]
            i = name_end(w, 12) + 4
            out: tuple[list[_Rec], list[_Rec], list[_Rec]] = ([], [], [])
            for section, n in zip(out, counts, strict=True):
                for _ in range(n):
                    i = name_end(w, i)
                    section.append(_Rec(_U16.unpack_from(w, i)[0]))
                    i += 10 + _U16.unpack_from(w, i + 8)[0]
            self._sections = out
        return self._sections

    @property
    def rr(self) -> list[_Rec]:
        return self._walk()[0]

    @property
    def auth(self) -> list[_Rec]:
        return self._walk()[1]

    @property
    def ar(self) -> list[_Rec]:
        return self._walk()[2]
