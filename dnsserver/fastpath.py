"""The hot path: answer a query from stored wire bytes without parsing it into objects.

A query qualifies when it is a plain IN-class QUERY with one uncompressed question and at most an
OPT record (EDNS version 0). Its key is the question's bytes with the name lower-cased, plus a byte
for the DO and CD bits: exactly what decides the answer. A stored answer keeps everything after the
question, with the positions of its TTL fields, so a reply is: the client's ID, our flags and
counts, the client's question bytes (its spelling echoed for free), the stored records with TTLs
patched, and an OPT when the client sent one. Anything unusual returns None and takes the slow path,
which handles it in full.
"""

from __future__ import annotations

import random
import struct

from dnsserver.wire import question_end

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_COUNTS = struct.Struct("!HHHH")

QR, AA, TC, RD, RA, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020, 0x0010
TYPE_A, TYPE_AAAA, TYPE_OPT = 1, 28, 41


class FastQuery:
    """What the hot path reads from a query's bytes."""

    __slots__ = ("do", "edns", "flags", "key", "last", "qend", "qtype", "udp_size")

    def __init__(self, key: bytes, qend: int, qtype: int, flags: int, edns: bool, udp_size: int, do: bool) -> None:
        self.key = key
        self.qend = qend
        self.qtype = qtype
        self.flags = flags
        self.edns = edns
        self.udp_size = udp_size
        self.do = do
        # The last reply assembled for this query, all but the ID: (tail, flags, bytes).
        self.last: tuple[bytes, int, bytes] | None = None


def size_limit(q: FastQuery, proto: str) -> int:
    """The largest reply the client of `q` takes: its EDNS size (at least 512) over UDP, 64 KiB over TCP."""
    return q.udp_size if proto == "udp" else 65535


_BITS = [bytes((b,)) for b in range(4)]
_PLAIN_HEADER = b"\x00\x01\x00\x00\x00\x00"


def parse_query(data: bytes) -> FastQuery | None:
    """The key and EDNS details of `data`, or None if it needs the slow path."""
    if type(data) is not bytes:  # keys must be hashable; listeners hand us bytes already
        data = bytes(data)
    if not _plain_header(data):
        return None
    qend = question_end(data)  # walks the labels: a compression pointer sends the query to the slow path
    if qend < 0:
        return None
    i = qend - 5  # the name's zero byte
    return _read_query(data, i, data[12:i].lower())


def _plain_header(data: bytes) -> bool:
    """QR=0, opcode QUERY, QDCOUNT=1, ANCOUNT=NSCOUNT=0, ARCOUNT 0 or 1, and room for a question."""
    return not (len(data) < 17 or data[2] & 0xF8 or data[4:10] != _PLAIN_HEADER or data[10] or data[11] > 1)


def _read_query(data: bytes, i: int, name: bytes) -> FastQuery | None:
    """What follows a question name whose zero byte is at `i`; the key starts with `name` (the name's bytes
    in whatever form the caller keys on), then the question's type and class, then the DO/CD byte."""
    n = len(data)
    qend = i + 5
    if qend > n or data[i + 3:i + 5] != b"\x00\x01":  # class IN only
        return None
    edns, size, do = False, 512, False
    if data[11]:
        # The only additional record allowed: an OPT for the root, EDNS version 0, ending the packet.
        if n < qend + 11 or data[qend] != 0 or data[qend + 1:qend + 3] != b"\x00\x29" or data[qend + 6]:
            return None
        if qend + 11 + ((data[qend + 9] << 8) | data[qend + 10]) != n:
            return None
        edns = True
        size = max(512, (data[qend + 3] << 8) | data[qend + 4])
        do = data[qend + 7] >= 0x80
    elif qend != n:
        return None
    flags = (data[2] << 8) | data[3]
    key = name + data[i + 1:qend] + _BITS[(2 if do else 0) | (1 if flags & CD else 0)]
    return FastQuery(key, qend, (data[i + 1] << 8) | data[i + 2], flags, edns, size, do)


_QUICK_MAX = 16384  # FastQuery objects kept (with their last reply, at most _LAST_MAX bytes: <= 16 MiB)
_LAST_MAX = 1024
# data[2:] -> its FastQuery; the hot path reads it directly before calling quick_query.
quick_queries: dict[bytes, FastQuery] = {}


def quick_query(data: bytes) -> FastQuery | None:
    """Like parse_query, but the key is the question's exact bytes and the name is not walked.

    Cheap enough for every packet: a key only means something once it is found in a route map,
    and routes are made only from queries that `parse_query` validated whose question ends at their
    first zero byte. A packet whose bytes match such a question up to that zero byte has the same
    labels, so it needs no walk of its own.

    Everything it reads but the ID is in data[2:], so queries that repeat but for their ID (what
    clients send most) share one FastQuery, found with one dict lookup instead of reading the header
    again (~130 ns against ~630 ns), and `assemble` can reuse what it built for the last of them.
    """
    rest = data[2:]
    q = quick_queries.get(rest)
    if q is None:
        q = _quick_parse(data)
        if q is not None:
            if len(quick_queries) >= _QUICK_MAX:
                quick_queries.clear()  # a cheap bound; repeating queries come straight back
            quick_queries[rest] = q
    return q


def _quick_parse(data: bytes) -> FastQuery | None:
    if not _plain_header(data):
        return None
    i = data.find(0, 12)
    if i < 0:
        return None
    return _read_query(data, i, data[12:i + 1])  # the name as sent, zero byte included: the question's bytes


_opt_cache: dict[tuple[int, bool], bytes] = {}


def opt_record(udp_size: int, do: bool) -> bytes:
    """Our OPT: the client's size echoed, version 0, DO echoed, no options (as the slow path does)."""
    rec = _opt_cache.get((udp_size, do))
    if rec is None:
        rec = b"\x00\x00\x29" + _U16.pack(udp_size) + b"\x00\x00" + (b"\x80\x00" if do else b"\x00\x00") + b"\x00\x00"
        if len(_opt_cache) < 4096:
            _opt_cache[(udp_size, do)] = rec
    return rec


def skip_name(wire: bytes, i: int) -> int:
    """Offset just past the (possibly compressed) name at `i`."""
    while True:
        length = wire[i]
        if length == 0:
            return i + 1
        if length & 0xC0 == 0xC0:
            return i + 2
        i += 1 + length


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
        qend = skip_name(packed, 12) + 4
        tail = packed[qend:]
        ttl_at: list[int] = []
        rotations: list[tuple[int, int, int]] = []
        run_start, run_size, run_count, run_type = -1, 0, 0, 0
        i = qend
        for idx in range(an + ns + ar):
            start = i
            i = skip_name(packed, i)
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
    if len(rest) <= _LAST_MAX:
        q.last = (tail, flags, rest)
    return data[0:2] + rest


def with_client_opt(reply: bytes, q: FastQuery) -> bytes | None:
    """`reply` with its OPT record replaced by ours for the query `q` (or removed if `q` had none).

    What the scrub does for a relayed reply: the client sees our EDNS size and its own DO bit, not the
    upstream's options. `reply` comes from a relay, which checked that it is well formed (forward
    counts a malformed reply as a failed upstream), so a reply without additional records is not
    walked at all. None if the reply cannot be walked (then the caller takes the slow path).
    """
    try:
        _, an, ns, ar = _COUNTS.unpack_from(reply, 4)
        if ar == 0:
            if not q.edns:
                return reply
            return reply[:10] + b"\x00\x01" + reply[12:] + opt_record(q.udp_size, q.do)
        i = skip_name(reply, 12) + 4
        for _ in range(an + ns):
            i = skip_name(reply, i)
            i += 10 + _U16.unpack_from(reply, i + 8)[0]
        kept = [reply[:i]]
        extra = 0
        for _ in range(ar):
            start = i
            i = skip_name(reply, i)
            rtype = _U16.unpack_from(reply, i)[0]
            i += 10 + _U16.unpack_from(reply, i + 8)[0]
            if rtype != TYPE_OPT:
                kept.append(reply[start:i])
                extra += 1
        if i != len(reply):
            return None
    except (IndexError, struct.error):
        return None
    if q.edns:
        kept.append(opt_record(q.udp_size, q.do))
        extra += 1
    head = kept[0]
    return head[:10] + _U16.pack(extra) + head[12:] + b"".join(kept[1:])


MALFORMED, NO_OPT = -2, -1


def trailing_opt(msg: bytes, start: int = 12, qd: int | None = None) -> int:
    """Walk `msg`'s records (no parse): MALFORMED unless the header's counts match records that end
    exactly at its end; else where its last record starts if that is an OPT, or NO_OPT.

    With `start` and `qd`, the walk begins at `start` with that many questions left (a caller that has
    already checked the question passes its end and 0).
    """
    try:
        qdcount, an, ns, ar = _COUNTS.unpack_from(msg, 4)
        i = start
        for _ in range(qdcount if qd is None else qd):
            i = skip_name(msg, i) + 4
        last, rtype = -1, 0
        for _ in range(an + ns + ar):
            last = i
            # skip_name, inlined: this runs for every record of every relayed reply
            while True:
                length = msg[i]
                if length == 0:
                    i += 1
                    break
                if length & 0xC0 == 0xC0:
                    i += 2
                    break
                i += 1 + length
            rtype = (msg[i] << 8) | msg[i + 1]
            i += 10 + ((msg[i + 8] << 8) | msg[i + 9])
        if i != len(msg):
            return MALFORMED
        return last if ar and rtype == TYPE_OPT else NO_OPT
    except (IndexError, struct.error):
        return MALFORMED


def well_formed(msg: bytes) -> bool:
    """Whether the counts in `msg`'s header match records that end exactly at its end (no parse)."""
    return trailing_opt(msg) != MALFORMED


def without_opt(msg: bytes, at: int) -> bytes:
    """`msg` without its last record, an OPT starting at `at` (see `trailing_opt`)."""
    return msg[:10] + _U16.pack(((msg[10] << 8) | msg[11]) - 1) + msg[12:at]
