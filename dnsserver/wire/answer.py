"""Stored answers as wire bytes (the answer store of cache, hosts and kubernetes) and the replies the hot
path assembles from them.

A stored answer keeps everything after the question, with the positions of its TTL fields, so a reply
is: the client's ID, our flags and counts, the client's question bytes (its spelling echoed for free),
the stored records with TTLs patched, and an OPT when the client sent one.
"""

from __future__ import annotations

import random
import struct

from dnsserver.wire.consts import CD, RD, TYPE_A, TYPE_AAAA
from dnsserver.wire.names import name_end
from dnsserver.wire.query import FastQuery

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_COUNTS = struct.Struct("!HHHH")
LAST_MAX = 1024  # the longest reply kept on its FastQuery for the next query equal but for its ID


_opt_cache: dict[tuple[int, bool], bytes] = {}


def opt_record(udp_size: int, do: bool) -> bytes:
    """Our OPT: the client's size echoed, version 0, DO echoed, no options (as the slow path does)."""
    rec = _opt_cache.get((udp_size, do))
    if rec is None:
        rec = b"\x00\x00\x29" + _U16.pack(udp_size) + b"\x00\x00" + (b"\x80\x00" if do else b"\x00\x00") + b"\x00\x00"
        if len(_opt_cache) < 4096:
            _opt_cache[(udp_size, do)] = rec
    return rec


def with_options(opt: bytes, options: bytes) -> bytes:
    """An OPT record from `opt_record` carrying `options` (option code, length, data; RFC 6891) as its data."""
    return opt[:-2] + _U16.pack(len(options)) + options


class WireAnswer:
    """A reply's records as wire bytes, ready to be sent after any query with the same key.

    `tail` holds the answer, authority and additional records (no OPT) exactly as packed after a
    question that starts at offset 12, so compression pointers stay valid when the client's own
    question (same length, maybe other case) is put in front. `ttl_at` are the offsets, inside
    `tail`, of every record's TTL field. `rotate` marks runs of address records in the answer that
    loadbalance may reorder: (start, size, count) with records of equal size.
    """

    __slots__ = ("_rendered", "_ttl", "an", "ar", "flags", "ns", "rotations", "tail", "ttl_at")

    def __init__(self, flags: int, an: int, ns: int, ar: int, tail: bytes, ttl_at: list[int],
                 rotations: list[tuple[int, int, int]]) -> None:
        self.flags = flags
        self.an, self.ns, self.ar = an, ns, ar
        self.tail = tail
        self.ttl_at = ttl_at
        self.rotations = rotations
        self._ttl = -1
        self._rendered = tail

    @classmethod
    def from_reply(cls, packed: bytes) -> WireAnswer:
        """Split a packed reply (no OPT in it) at the end of its question and index its records."""
        an, ns, ar = _U16.unpack_from(packed, 6)[0], _U16.unpack_from(packed, 8)[0], _U16.unpack_from(packed, 10)[0]
        qend = name_end(packed, 12) + 4
        tail = packed[qend:]
        ttl_at: list[int] = []
        rotations: list[tuple[int, int, int]] = []
        run_start, run_size, run_count, run_type = -1, 0, 0, 0
        i = qend
        for idx in range(an + ns + ar):
            start = i
            i = name_end(packed, i)
            rtype = _U16.unpack_from(packed, i)[0]
            ttl_at.append(i + 4 - qend)
            rdlen = _U16.unpack_from(packed, i + 8)[0]
            i += 10 + rdlen
            size = i - start
            if idx < an and rtype in (TYPE_A, TYPE_AAAA) and run_count and rtype == run_type and size == run_size \
                    and start == run_start + run_size * run_count:
                run_count += 1
                continue
            if run_count > 1:
                rotations.append((run_start - qend, run_size, run_count))
            if idx < an and rtype in (TYPE_A, TYPE_AAAA):
                run_start, run_size, run_count, run_type = start, size, 1, rtype
            else:
                run_count = 0
        if run_count > 1:
            rotations.append((run_start - qend, run_size, run_count))
        flags = _U16.unpack_from(packed, 2)[0]
        return cls(flags, an, ns, ar, tail, ttl_at, rotations)

    def with_ttl(self, ttl: int) -> bytes:
        """The records with every TTL set to `ttl` (rendered once per distinct value)."""
        if ttl == self._ttl:
            return self._rendered
        buf = bytearray(self.tail)
        packed = _U32.pack(ttl)
        for off in self.ttl_at:
            buf[off:off + 4] = packed
        self._rendered = bytes(buf)
        self._ttl = ttl
        return self._rendered

    def shuffled(self, tail: bytes) -> bytes:
        """`tail` with each run of address records in random order (what loadbalance does)."""
        for start, size, count in self.rotations:
            chunks = [tail[start + k * size:start + (k + 1) * size] for k in range(count)]
            random.shuffle(chunks)
            tail = tail[:start] + b"".join(chunks) + tail[start + size * count:]
        return tail


def assemble(data: bytes, q: FastQuery, flags: int, an: int, ns: int, ar: int, tail: bytes) -> bytes:
    """The reply to `data`: its ID, `flags` (RD and CD copied from the query), its question, `tail`, OPT.

    Everything after the ID depends only on `q` (shared by queries equal but for their ID) and the
    arguments, so the last result is kept on `q` and reused while the same `tail` object is sent with
    the same flags: stored answers keep their tail object until their data or TTL changes, and the
    counts are those of the records in `tail`, so the same object means the same counts.
    """
    last = q.last
    if last is not None and last[0] is tail and last[1] == flags:
        return data[0:2] + last[2]
    out_flags = flags | (q.flags & (RD | CD))
    if q.edns:
        rest = (_U16.pack(out_flags) + _COUNTS.pack(1, an, ns, ar + 1) + data[12:q.qend] + tail
                + opt_record(q.udp_size, q.do))
    else:
        rest = _U16.pack(out_flags) + _COUNTS.pack(1, an, ns, ar) + data[12:q.qend] + tail
    if len(rest) <= LAST_MAX:
        q.last = (tail, flags, rest)
    return data[0:2] + rest
