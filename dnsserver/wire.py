"""Byte-level DNS helpers that work without parsing a message into objects.

Used where a full dnslib parse would be wasted: reading the header of a packet that may be
malformed, answering FORMERR, and (on the hot path) keying answers by their question bytes.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("!HHHHHH")

QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
OPCODE_MASK = 0x7800

# rcodes used by the core (RFC 1035 / 6891)
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16

RCODE_NAMES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADVERS",
}


def rcode_name(rcode: int) -> str:
    return RCODE_NAMES.get(rcode, f"RCODE{rcode}")


def header_only_reply(query: bytes, rcode: int) -> bytes:
    """A reply carrying only the header: ID, opcode and RD copied from `query`, no sections.

    This is what a client gets for a packet whose header is readable but whose body is not (FORMERR),
    so it is built from raw bytes and can never raise on bad input.
    """
    qid, flags = struct.unpack_from("!HH", query, 0)
    out_flags = QR | (flags & (OPCODE_MASK | RD)) | (rcode & 0xF)
    return HEADER.pack(qid, out_flags, 0, 0, 0, 0)


def question_end(data: bytes, offset: int = 12) -> int:
    """Offset just past the first question (name + type + class), or -1 if it does not parse.

    Compression pointers are not allowed in a question name we key on; a pointer makes this return -1
    so the caller takes the slow path, which handles it properly.
    """
    n = len(data)
    i = offset
    while True:
        if i >= n:
            return -1
        length = data[i]
        if length == 0:
            i += 1
            break
        if length & 0xC0:
            return -1
        i += 1 + length
    i += 4
    return i if i <= n else -1
