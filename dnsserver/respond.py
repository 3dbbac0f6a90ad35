"""A reply written by the chain, as bytes ready for the scrub every reply gets (`wire.reply.scrub`).

CoreDNS calls this its scrub writer: the ID and question are the client's, the OPT record is
echoed (our size, version 0, DO copied) only when the client sent one, and the reply is cut to
the client's size with TC set when records had to be left out. The chain's reply is packed here
with the client's ID and question and without any OPT; the OPT and the cut are done on the bytes,
by the same function that finishes relayed replies.
"""

from __future__ import annotations

from dnslib import DNSQuestion, DNSRecord

from dnsserver.request import Request
from dnsserver.wire.consts import TYPE_OPT
from dnsserver.wire.reply import scrub


def packed(req: Request, reply: DNSRecord) -> bytes:
    """`reply` packed for `req`: the client's ID and question, QR set, no OPT record (the scrub adds ours)."""
    h = reply.header
    h.id = req.msg.header.id
    h.qr = 1
    reply.questions = [DNSQuestion(req.msg.q.qname, req.qtype, req.qclass)]
    reply.ar = [rr for rr in reply.ar if rr.rtype != TYPE_OPT]
    out: bytes = reply.pack()
    return out


def finalize(req: Request, reply: DNSRecord) -> bytes:
    """Pack `reply` for `req` and scrub it: ID and question restored, our OPT, cut to the client's size."""
    return scrub(packed(req, reply), req.edns, req.udp_size, req.do, req.max_size)


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
