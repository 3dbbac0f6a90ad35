"""What the server does to every reply before it is sent, whichever plugin wrote it.

CoreDNS calls this its scrub writer: the ID and question are the client's, the OPT record is
echoed (our size, version 0, DO copied) only when the client sent one, and the reply is cut to
the client's size with TC set when records had to be left out.
"""

from __future__ import annotations

from dnslib import EDNS0, DNSQuestion, DNSRecord

from dnsserver.fastpath import TYPE_OPT
from dnsserver.request import Request


def _set_opt(req: Request, reply: DNSRecord) -> None:
    reply.ar = [rr for rr in reply.ar if rr.rtype != TYPE_OPT]
    # What we advertise: the client's own size, as CoreDNS does (Request keeps it at 512 or more).
    if req.edns:
        reply.add_ar(EDNS0(udp_len=req.udp_size, flags="do" if req.do else ""))
    # dnslib recomputes section counts from the lists when packing, so nothing else to fix.


def finalize(req: Request, reply: DNSRecord) -> bytes:
    """Pack `reply` for `req`: restore ID and question, normalise EDNS0, truncate to the client's size."""
    h = reply.header
    h.id = req.msg.header.id
    h.qr = 1
    reply.questions = [DNSQuestion(req.msg.q.qname, req.qtype, req.qclass)]
    _set_opt(req, reply)
    wire: bytes = reply.pack()
    limit = req.max_size
    if len(wire) <= limit:
        return wire
    return _truncate(req, reply, limit)


class Continued(bytes):
    """A reply's first message, ready to send, with the messages that follow it on a stream.

    A plugin asks for several messages (AXFR) by returning a reply with a `more` list of further
    DNSRecords; each is finalized like the first. UDP sends the first only, as it is `bytes`.
    """

    more: list[bytes]

    def __new__(cls, first: bytes, more: list[bytes]) -> Continued:
        self = super().__new__(cls, first)
        self.more = more
        return self


def finalize_all(req: Request, reply: DNSRecord) -> bytes:
    """`finalize`, and over TCP also the reply's further messages (`reply.more`), as a Continued."""
    out = finalize(req, reply)
    more = getattr(reply, "more", None)
    if not more or req.proto == "udp":
        return out
    return Continued(out, [finalize(req, m) for m in more])


def _truncate(req: Request, reply: DNSRecord, limit: int) -> bytes:
    """Keep the longest prefix of answer+authority+additional that fits; TC if anything but glue is cut.

    Records are dropped from the end (additional first, then authority, then answer). RFC 2181 says
    TC is for required records; like CoreDNS we cannot tell which are required, so cutting answer or
    authority records sets TC, while cutting only additional records does not.
    """
    answers, auth = list(reply.rr), list(reply.auth)
    extra = [rr for rr in reply.ar if rr.rtype != TYPE_OPT]
    records = [("rr", r) for r in answers] + [("auth", r) for r in auth] + [("ar", r) for r in extra]

    def build(n: int) -> bytes:
        kept = records[:n]
        reply.rr = [r for s, r in kept if s == "rr"]
        reply.auth = [r for s, r in kept if s == "auth"]
        reply.ar = [r for s, r in kept if s == "ar"]
        reply.header.tc = int(n < len(answers) + len(auth) or bool(reply.header.tc))
        _set_opt(req, reply)
        packed: bytes = reply.pack()
        return packed

    lo, hi = 0, len(records)  # largest n whose packing fits, by bisection (sizes grow with n)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(build(mid)) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return build(lo)
