"""Answers that depend only on the question and a version number, kept as wire bytes.

A plugin whose replies change only when its data does (hosts when the file is re-read, kubernetes when
the watched objects change) computes a reply once per version on the slow path and remembers it; the
server's hot path then sends it from bytes until the version moves on.
"""

from __future__ import annotations

from dnslib import DNSRecord

from dnsserver.dnslib_ext import pack_caseless
from dnsserver.wire.answer import WireAnswer, assemble
from dnsserver.wire.consts import AA, TYPE_OPT
from dnsserver.wire.query import FastQuery, parse_query


class _Entry:
    __slots__ = ("version", "wire")

    def __init__(self, version: int, wire: WireAnswer) -> None:
        self.version = version
        self.wire = wire


class AnswerMemo:
    """Replies remembered as wire bytes per question, valid while their source's version holds."""

    def __init__(self, limit: int = 200_000) -> None:
        self.entries: dict[bytes, _Entry] = {}
        self.limit = limit

    def fast_answer(self, data: bytes, q: FastQuery, key: bytes, version: int, shuffle: bool,
                    max_size: int) -> bytes | None:
        """The reply to `data` if one was remembered for `key` at this version and is at most `max_size`
        bytes (the hot path)."""
        e = self.entries.get(key)
        if e is None or e.version != version:
            return None
        w = e.wire
        tail = w.shuffled(w.tail) if shuffle and w.rotations else w.tail
        last = q.last  # assemble's own reuse of its last reply, tried here first: one call less
        if last is not None and last[0] is tail and last[1] == w.flags:
            out = data[0:2] + last[2]
        else:
            out = assemble(data, q, w.flags, w.an, w.ns, w.ar, tail)
        return out if len(out) <= max_size else None

    def reply(self, query: bytes, version: int) -> DNSRecord | None:
        """The remembered reply as a message, for the slow path (when the hot path could not be used)."""
        q = parse_query(query)
        if q is None:
            return None
        e = self.entries.get(q.key)
        if e is None or e.version != version:
            return None
        w = e.wire
        return DNSRecord.parse(assemble(query, q, w.flags, w.an, w.ns, w.ar, w.tail))

    def remember(self, query: bytes, version: int, reply: DNSRecord) -> None:
        q = parse_query(query)
        if q is None:
            return
        if len(self.entries) >= self.limit:
            self.entries.clear()  # a cheap bound; busy names come back on their next slow-path answer
        wire = WireAnswer.from_reply(pack_caseless(DNSRecord(reply.header, questions=reply.questions, rr=reply.rr,
                                                             auth=reply.auth,
                                                             ar=[r for r in reply.ar if r.rtype != TYPE_OPT])))
        wire.flags |= AA
        self.entries[q.key] = _Entry(version, wire)
