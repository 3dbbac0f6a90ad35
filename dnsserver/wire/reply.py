"""Whole messages as bytes: the checks a relayed reply must pass, the client's OPT and truncation (the
scrub every reply gets), replies made from a query's bytes (FORMERR, REFUSED, ...), and how long HTTP
caches may keep a reply (`max_age`, DNS over HTTPS).

Everything here reads records by walking them with `names.name_end`; nothing parses a message.
"""

from __future__ import annotations

import bisect
import struct

from dnslib import DNSRecord

from dnsserver.wire.answer import opt_record, with_options
from dnsserver.wire.consts import (
    NOERROR,
    NXDOMAIN,
    OPCODE_MASK,
    OPCODE_QUERY,
    PLAIN_QUERY_COUNTS,
    QR,
    RD,
    TC,
    TYPE_AXFR,
    TYPE_IXFR,
    TYPE_NS,
    TYPE_OPT,
    TYPE_SOA,
)
from dnsserver.wire.names import name_end, name_text, question_end

_U16 = struct.Struct("!H")
_HEADER = struct.Struct("!HHHHHH")
_COUNTS = struct.Struct("!HHHH")
_RR_HEAD = struct.Struct("!HHIH")  # type, class, TTL, RDLENGTH

# What `trailing_opt` and `upstream_reply` find wrong with a message.
MALFORMED, NO_OPT, FOREIGN = -2, -1, -3


def header_only_reply(query: bytes, rcode: int) -> bytes:
    """A reply carrying only the header: ID, opcode and RD copied from `query`, no sections.

    This is what a client gets for a packet whose header is readable but whose body is not (FORMERR),
    so it is built from raw bytes and can never raise on bad input.
    """
    qid, flags = struct.unpack_from("!HH", query, 0)
    out_flags = QR | (flags & (OPCODE_MASK | RD)) | (rcode & 0xF)
    return _HEADER.pack(qid, out_flags, 0, 0, 0, 0)


def error_reply(query: bytes, rcode: int) -> bytes:
    """An empty reply to `query` with `rcode`, from bytes: ID, opcode, RD and the question copied."""
    end = question_end(query)
    if end < 0:
        return header_only_reply(query, rcode)
    flags = QR | (((query[2] << 8) | query[3]) & (OPCODE_MASK | RD)) | (rcode & 0xF)
    return query[:2] + _U16.pack(flags) + PLAIN_QUERY_COUNTS + b"\x00\x00" + query[12:end]


def relayable(query: bytes) -> tuple[str, bool] | None:
    """(lower-case query name, has EDNS) if `query` can be relayed as it is, else None.

    As it is means: a plain query (QR clear, opcode 0, one question, nothing but at most an OPT
    record after it, whose size is at least 512) with an uncompressed name of ordinary labels.
    """
    if len(query) < 12 or query[2] & 0xF8 or query[4:10] != PLAIN_QUERY_COUNTS or query[10]:
        return None
    name = name_text(query, 12, strict=True)
    end = question_end(query)
    if name is None or end < 0:
        return None
    arcount, n = query[11], len(query)
    if arcount == 0:
        return name.lower(), False
    # One additional record: it must be an OPT owned by the root, with a size of at least 512.
    if arcount != 1 or n < end + 11 or query[end] != 0 or query[end + 1:end + 3] != b"\x00\x29" \
            or ((query[end + 3] << 8) | query[end + 4]) < 512:
        return None
    return name.lower(), True


def same_question(query: bytes, reply: bytes) -> bool:
    """Is `reply` a response (QR) to `query`'s one question (name compared case-insensitively)?"""
    return question_checked(query, reply) >= 0


def question_checked(query: bytes, reply: bytes, end: int | None = None) -> int:
    """`same_question`, telling more: -1 if not; else where the reply's question ends (0 if the question
    matched only when parsed, a compressed name: the reply must then be walked from its start). `end` is
    where the query's question ends, if the caller knows."""
    if len(reply) < 12 or not reply[2] & 0x80 or reply[4] != 0 or reply[5] != 1:
        return -1
    if end is None:
        end = question_end(query)
    # Upstreams echo the question as sent, so equal bytes are the common case; the name's case may
    # differ (0x20), its type and class never (lower-casing them would take type 0x41 for 0x61).
    if end > 0 and (reply[12:end] == query[12:end] or (reply[12:end - 4].lower() == query[12:end - 4].lower()
                                                      and reply[end - 4:end] == query[end - 4:end])):
        return end
    # The byte comparison fails on a compressed question name; compare the parsed questions then.
    try:
        q, r = DNSRecord.parse(query).q, DNSRecord.parse(reply).q
    except Exception:
        return -1
    same = str(q.qname).lower() == str(r.qname).lower() and q.qtype == r.qtype and q.qclass == r.qclass
    return 0 if same else -1


def foreign_or_malformed(reply: bytes) -> int:
    """Why a reply that does not answer the query's question fails: MALFORMED when its records do not
    even add up (garbled on the way, as CoreDNS's failed unpack: a failed upstream, the next is asked),
    else FOREIGN (a well-formed reply to something else: the client gets FORMERR, as from CoreDNS)."""
    return MALFORMED if trailing_opt(reply) == MALFORMED else FOREIGN


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
            i = name_end(msg, i) + 4
            if i < 4:
                return MALFORMED
        last, rtype = -1, 0
        for _ in range(an + ns + ar):
            last = i
            i = name_end(msg, i)
            if i < 0:
                return MALFORMED
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


def _without_opts(msg: bytes) -> bytes | None:
    """`msg` (well formed) without any OPT record, wherever it stands among the additional records."""
    try:
        _, an, ns, ar = _COUNTS.unpack_from(msg, 4)
        i = name_end(msg, 12) + 4
        for _ in range(an + ns):
            i = name_end(msg, i)
            i += 10 + _U16.unpack_from(msg, i + 8)[0]
        kept = [msg[:i]]
        for _ in range(ar):
            start = i
            i = name_end(msg, i)
            rtype = _U16.unpack_from(msg, i)[0]
            i += 10 + _U16.unpack_from(msg, i + 8)[0]
            if rtype != TYPE_OPT:
                kept.append(msg[start:i])
    except struct.error:
        return None
    return kept[0][:10] + _U16.pack(len(kept) - 1) + kept[0][12:] + b"".join(kept[1:])


def upstream_reply(query: bytes, reply: bytes) -> bytes | int:
    """A relayed reply checked, as the client is to get it before the scrub: the query's ID, no OPT.

    FOREIGN if it is well formed but does not answer `query`'s question (the client gets FORMERR),
    MALFORMED if its records do not add up, question included (a failed upstream: the next one is
    asked). `query` is one the relay path takes (see `relayable`): its name's labels hold no zero byte,
    so its question ends 4 bytes after the first one.
    """
    end = question_checked(query, reply, query.find(0, 12) + 5)
    if end < 0:
        return foreign_or_malformed(reply)
    opt = trailing_opt(reply, end, 0) if end else trailing_opt(reply)
    if opt >= 0:
        return query[:2] + without_opt(reply, opt)[2:]
    if opt == MALFORMED:
        return MALFORMED
    if reply[11] or reply[10]:
        # Additional records, the last not an OPT: an OPT may still stand among them (rare).
        stripped = _without_opts(reply)
        return MALFORMED if stripped is None else query[:2] + stripped[2:]
    return query[:2] + reply[2:]


def scrub(msg: bytes, edns: bool, udp_size: int, do: bool, limit: int, options: bytes = b"") -> bytes:
    """What the client gets of a reply `msg` that holds no OPT record: our OPT when it sent one (its
    size echoed, version 0, its DO bit, and `options`: EDNS0 options in wire form, such as nsid's or
    an RFC 8914 extended error), and no more than `limit` bytes. A client that sent no OPT gets none
    (RFC 6891 section 7), options included.

    A reply too long for the client keeps the longest run of its records that fits (additional ones
    are dropped first, then authority, then answer); TC is set when any but additional records had to
    go. RFC 2181 says TC is for required records; like CoreDNS we cannot tell which are required.
    """
    opt = (opt_record(udp_size, do) if not options else with_options(opt_record(udp_size, do), options)) \
        if edns else b""
    if len(msg) + len(opt) > limit:
        msg = _cut(msg, limit - len(opt))
    if not opt:
        return msg
    return msg[:10] + _U16.pack(((msg[10] << 8) | msg[11]) + 1) + msg[12:] + opt


def _cut(msg: bytes, room: int) -> bytes:
    """`msg` cut to its longest run of whole records (after the question) that fits in `room` bytes."""
    qd, an, ns, ar = _COUNTS.unpack_from(msg, 4)
    i = 12
    for _ in range(qd):
        i = name_end(msg, i) + 4
    ends = [i]
    for _ in range(an + ns + ar):
        i = name_end(msg, i)
        i += 10 + _U16.unpack_from(msg, i + 8)[0]
        ends.append(i)
    n = max(bisect.bisect_right(ends, room) - 1, 0)  # records kept: the first n
    flags = (msg[2] << 8) | msg[3]
    if n < an + ns:
        flags |= TC
    counts = _COUNTS.pack(qd, min(n, an), min(max(n - an, 0), ns), max(n - an - ns, 0))
    return msg[:2] + _U16.pack(flags) + counts + msg[12:ends[n]]


# CoreDNS's bounds on the max-age of a DoH reply (dnsutil's MinimalDefaultTTL and MaximumDefaultTTL).
MIN_AGE, MAX_AGE = 5, 3600


def max_age(reply: bytes) -> int:
    """How long HTTP caches may keep `reply` (Cache-Control: max-age), in seconds, as CoreDNS works it out.

    An answer, a name error or a NODATA may be kept for the smallest TTL among its answer, authority and
    additional records (OPT aside), at most an hour. Anything else (errors, referrals, zone transfers, a
    reply without records, one that does not walk) gets the minimum of 5 s. CoreDNS also gives the
    minimum to a DNSSEC answer with an expired signature; no plugin here serves signed answers.
    """
    walked = _records(reply)
    if walked is None:
        return MIN_AGE
    qtype, records = walked
    if not _cacheable(reply, qtype, records):
        return MIN_AGE
    ttls = [ttl for _, rtype, ttl in records if rtype != TYPE_OPT]
    return min(MAX_AGE, *ttls) if ttls else MIN_AGE


def _records(msg: bytes) -> tuple[int, list[tuple[int, int, int]]] | None:
    """The first question's type and every record as (section: 0 answer, 1 authority, 2 additional, type,
    TTL); None if the counts do not match the bytes."""
    try:
        qd, an, ns, ar = _COUNTS.unpack_from(msg, 4)
        i, qtype = 12, 0
        for n in range(qd):
            i = name_end(msg, i)
            if i < 0:
                return None
            if n == 0:
                qtype = _U16.unpack_from(msg, i)[0]
            i += 4
        records = []
        for n in range(an + ns + ar):
            i = name_end(msg, i)
            if i < 0:
                return None
            rtype, _, ttl, rdlen = _RR_HEAD.unpack_from(msg, i)
            records.append((0 if n < an else 1 if n < an + ns else 2, rtype, ttl))
            i += 10 + rdlen
    except struct.error:
        return None
    return (qtype, records) if i == len(msg) else None


def _cacheable(msg: bytes, qtype: int, records: list[tuple[int, int, int]]) -> bool:
    """Whether CoreDNS's response.Typify calls the reply an answer, a name error or NODATA (not an error,
    a referral, an update, a notify or a transfer)."""
    if (msg[2] >> 3) & 0xF != OPCODE_QUERY or qtype in (TYPE_AXFR, TYPE_IXFR):
        return False  # an update, a notify (or an opcode answered NOTIMP), a transfer
    rcode = msg[3] & 0xF
    if any(section == 0 for section, _, _ in records):
        return rcode == NOERROR  # an answer with NXDOMAIN is an error to Typify
    authority = [rtype for section, rtype, _ in records if section == 1]
    if rcode == NOERROR:
        return TYPE_SOA in authority or TYPE_NS not in authority  # NODATA, or a plain NOERROR; not a referral
    return rcode == NXDOMAIN
