"""A reply written by the chain, as bytes ready for the scrub every reply gets (`wire.reply.scrub`).

CoreDNS calls this its scrub writer: the ID and question are the client's, the OPT record is
echoed (our size, version 0, DO copied) only when the client sent one, and the reply is cut to
the client's size with TC set when records had to be left out. The chain's reply is packed here
with the client's ID and question and without any OPT; the OPT and the cut are done on the bytes,
by the same function that finishes relayed replies.

A plugin may also ask for EDNS options in the client's OPT (`extended_error`: an RFC 8914 extended DNS
error) and for no reply at all (`no_reply`: acl's drop).
"""

from __future__ import annotations

import struct

from dnslib import EDNS0, DNSHeader, DNSQuestion, DNSRecord, EDNSOption

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
    options = edns_options(reply)  # before `packed`, which drops the OPT that holds them
    return scrub(packed(req, reply), req.edns, req.udp_size, req.do, req.max_size, options)


EDNS_EDE = 15  # the option code of an extended DNS error (RFC 8914)


def extended_error(reply: DNSRecord, code: int, text: str = "") -> None:
    """Add an RFC 8914 extended DNS error (INFO-CODE `code`, EXTRA-TEXT `text`) to `reply`: it reaches
    the client in the OPT the scrub writes, if the client sent one."""
    opt = next((rr for rr in reply.ar if rr.rtype == TYPE_OPT), None)
    if opt is None:
        opt = EDNS0()
        reply.add_ar(opt)
    opt.rdata.append(EDNSOption(EDNS_EDE, struct.pack("!H", code) + text.encode()))


def edns_options(reply: DNSRecord) -> bytes:
    """The options (wire form) of `reply`'s OPT record, which `packed` drops: b"" in the common case."""
    for rr in reply.ar:
        if rr.rtype == TYPE_OPT and rr.rdata:
            return b"".join(struct.pack("!HH", o.code, len(o.data)) + bytes(o.data) for o in rr.rdata)
    return b""


class _Unsent(DNSHeader):  # type: ignore[misc]  # dnslib is untyped
    """The header of a reply that is never sent. Plugins that copy a reply copy its header with it."""


def no_reply(req: Request) -> DNSRecord:
    """What a plugin returns to send the client nothing at all (acl's drop): the server answers nothing,
    counts nothing and logs nothing, as CoreDNS does when no plugin writes."""
    h = req.msg.header
    return DNSRecord(_Unsent(id=h.id, qr=1, opcode=h.opcode, rd=h.rd), q=DNSQuestion(req.msg.q.qname, req.qtype,
                                                                                   req.qclass))


def unsent(reply: DNSRecord) -> bool:
    """Whether `reply` is one made by `no_reply`."""
    return isinstance(reply.header, _Unsent)


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
