"""DNS messages as bytes, read and written without parsing them into objects.

- `consts`: the one set of DNS numbers (flags, opcodes, rcodes, types, classes).
- `names`: the one walker over names in wire form, and the one reader of a name as text.
- `query`: the hot path's reading of a query (its key, EDNS size, DO bit).
- `answer`: stored answers (the wire stores of cache, hosts and kubernetes) and the replies assembled
  from them.
- `reply`: whole replies: the checks a relayed reply must pass, the scrub (the client's OPT,
  truncation), replies made from a query's bytes.
- `views`: read-only views of a query and its reply for observers (log, errors).

The constants and the header helpers are re-exported here: `from dnsserver import wire; wire.SERVFAIL`.
"""

from dnsserver.wire.consts import (
    AA,
    AD,
    BADVERS,
    CD,
    CLASS_IN,
    FORMERR,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    OPCODE_MASK,
    QR,
    RA,
    RCODE_NAMES,
    RD,
    REFUSED,
    SERVFAIL,
    TC,
    rcode_name,
)
from dnsserver.wire.names import question_end
from dnsserver.wire.reply import error_reply, header_only_reply

__all__ = [
    "AA",
    "AD",
    "BADVERS",
    "CD",
    "CLASS_IN",
    "FORMERR",
    "NOERROR",
    "NOTIMP",
    "NXDOMAIN",
    "OPCODE_MASK",
    "QR",
    "RA",
    "RCODE_NAMES",
    "RD",
    "REFUSED",
    "SERVFAIL",
    "TC",
    "error_reply",
    "header_only_reply",
    "question_end",
    "rcode_name",
]
