"""The one set of DNS numbers the server and its plugins use: header flags, opcodes, rcodes, types, classes."""

from __future__ import annotations

# Header flags, as bits of the 16-bit flags word (RFC 1035, 4035).
QR, AA, TC, RD, RA, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020, 0x0010
OPCODE_MASK = 0x7800
OPT_DO = 0x8000  # the DNSSEC OK bit, in the flags of an OPT record's TTL (RFC 3225)
# Header bytes 4-9 of a plain query: QDCOUNT 1, ANCOUNT and NSCOUNT 0.
PLAIN_QUERY_COUNTS = b"\x00\x01\x00\x00\x00\x00"

# Opcodes (RFC 1035, 1996, 2136).
OPCODE_QUERY, OPCODE_NOTIFY, OPCODE_UPDATE = 0, 4, 5

# Rcodes (RFC 1035, 2136, 6891). BADVERS does not fit the header: its high bits travel in the OPT record.
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16

RCODE_NAMES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADVERS",
}

# Record types.
TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_PTR, TYPE_MX, TYPE_HINFO = 1, 2, 5, 6, 12, 15, 13
TYPE_TXT, TYPE_AAAA, TYPE_SRV, TYPE_DNAME, TYPE_OPT, TYPE_DS, TYPE_RRSIG = 16, 28, 33, 39, 41, 43, 46
TYPE_IXFR, TYPE_AXFR, TYPE_ANY = 251, 252, 255

# Classes.
CLASS_IN = 1


def rcode_name(rcode: int) -> str:
    """The rcode's name as CoreDNS prints it (metrics labels, logs); RCODEn for one without a name."""
    return RCODE_NAMES.get(rcode, f"RCODE{rcode}")
