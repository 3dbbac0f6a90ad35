"""What dnslib lacks or gets wrong, mended once for the whole process (imported by `dnsserver`).

* HINFO: two character-strings (CPU, OS), on the wire exactly a two-string TXT; registered so it
  packs, parses and prints like the other types.
* Name compression past 16 KiB: a compression pointer has 14 bits, so it can only point into the
  first 16,383 bytes. dnslib remembers names at any offset and then writes pointers that wrap
  around, corrupting large TCP replies and zone transfers. Names beyond that offset are simply
  not offered for compression.
* `pack_caseless`: a message packed with names compressed whatever their case (dnslib compares
  labels byte for byte). What a wire store keeps is packed so: a reply assembled from it for a
  question in any spelling is then as compressed as dnslib would pack it after that question, so
  the hot path's bytes are the chain's.
"""

from __future__ import annotations

from dnslib.dns import RDMAP, TXT, DNSBuffer, DNSRecord

MAX_POINTER = 0x3FFF


class HINFO(TXT):  # type: ignore[misc]  # dnslib has no annotations: its TXT is Any to mypy
    """HINFO: two character-strings (CPU, OS), packed and parsed as a two-string TXT."""

    def __repr__(self) -> str:
        return " ".join('"' + s.decode(errors="replace").replace('"', '\\"') + '"' for s in self.data)


RDMAP.setdefault("HINFO", HINFO)


class _PointableNames(dict[object, int]):
    def __setitem__(self, key: object, offset: int) -> None:
        if offset <= MAX_POINTER:
            super().__setitem__(key, offset)


_original_init = DNSBuffer.__init__


class _CaselessNames(_PointableNames):
    """Names offered for compression, matched whatever their case."""

    @staticmethod
    def _fold(key: object) -> object:
        return tuple(label.lower() for label in key) if isinstance(key, tuple) else key

    def __contains__(self, key: object) -> bool:
        return super().__contains__(self._fold(key))

    def __getitem__(self, key: object) -> int:
        return super().__getitem__(self._fold(key))

    def __setitem__(self, key: object, offset: int) -> None:
        super().__setitem__(self._fold(key), offset)


def pack_caseless(record: DNSRecord) -> bytes:
    """`record` packed as DNSRecord.pack does, but with names compressed whatever their case."""
    record.set_header_qa()
    buffer = DNSBuffer()
    buffer.names = _CaselessNames()
    record.header.pack(buffer)
    for section in (record.questions, record.rr, record.auth, record.ar):
        for item in section:
            item.pack(buffer)
    return bytes(buffer.data)


def _init(self: DNSBuffer, data: bytes = b"") -> None:
    _original_init(self, data)
    self.names = _PointableNames()


if DNSBuffer.__init__ is not _init:
    DNSBuffer.__init__ = _init
