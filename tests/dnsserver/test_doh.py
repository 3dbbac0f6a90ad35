"""DNS over HTTPS without sockets: which requests carry a query (`query_from`), and the max-age of a reply."""

from __future__ import annotations

import base64

import pytest
from dnslib import NS, QTYPE, RCODE, RR, SOA, A, DNSRecord

from dnsserver.doh import MAX_TARGET, FrameSizes, query_from
from dnsserver.wire.reply import MAX_AGE, MIN_AGE, max_age

MIME = "application/dns-message"
QUERY = bytes(DNSRecord.question("app.example.org", "A").pack())
# Not for the hot path (another class), but a DNS query: the full parse decides.
CHAOS_QUERY = bytes(DNSRecord.question("version.bind", "TXT", "CH").pack())

STANDARD_B64 = base64.b64encode(b"\xfb\xff" + QUERY).decode().rstrip("=")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize(
    ("method", "target", "content_type", "body", "want"),
    [
        ("GET", f"/dns-query?dns={b64(QUERY)}", "", b"", QUERY),
        ("GET", f"/dns-query?ct&dns={b64(QUERY)}&x=1", "", b"", QUERY),  # other parameters are ignored
        ("POST", "/dns-query", MIME, QUERY, QUERY),
        ("POST", "/dns-query", "Application/DNS-Message; charset=x", QUERY, QUERY),
        ("POST", "/dns-query", MIME, CHAOS_QUERY, CHAOS_QUERY),
        ("GET", f"/other?dns={b64(QUERY)}", "", b"", 404),
        ("GET", f"/dns-query/?dns={b64(QUERY)}", "", b"", 404),
        ("POST", "/", MIME, QUERY, 404),
        ("PUT", "/dns-query", MIME, QUERY, 405),
        ("HEAD", f"/dns-query?dns={b64(QUERY)}", "", b"", 405),
        ("POST", "/dns-query", "text/plain", QUERY, 415),
        ("POST", "/dns-query", "", QUERY, 415),
        ("POST", "/dns-query", MIME, b"\x00" * 65536, 413),
        ("GET", "/dns-query?dns=" + "A" * MAX_TARGET, "", b"", 414),
        ("GET", "/dns-query", "", b"", 400),  # no dns parameter
        ("GET", "/dns-query?dns=", "", b"", 400),
        ("GET", f"/dns-query?dns={b64(QUERY)}&dns={b64(QUERY)}", "", b"", 400),
        ("GET", f"/dns-query?dns={b64(QUERY)}==", "", b"", 400),  # padded
        ("GET", f"/dns-query?dns={STANDARD_B64}", "", b"", 400),  # "+" and "/": not the URL alphabet
        ("GET", "/dns-query?dns=AAAAA", "", b"", 400),  # a length base64 cannot have
        ("GET", f"/dns-query?dns={b64(QUERY[:11])}", "", b"", 400),  # shorter than a header
        ("POST", "/dns-query", MIME, b"", 400),
        ("POST", "/dns-query", MIME, QUERY[:2] + b"\x81\x00" + QUERY[4:], 400),  # a response, not a query
        ("POST", "/dns-query", MIME, QUERY[:-2], 400),  # the question cut short
        ("POST", "/dns-query", MIME, QUERY[:12] + b"\x07app", 400),
        ("POST", "/dns-query", MIME, QUERY[:12] + b"\x03app\xc0\x0c" + QUERY[-4:], 400),  # a name pointing at itself
    ],
)
def test_query_from(method: str, target: str, content_type: str, body: bytes, want: bytes | int) -> None:
    assert query_from(method, target, content_type, body) == want


def reply(
    *,
    rcode: str = "NOERROR",
    answer: tuple[int, ...] = (),
    ns: tuple[int, ...] = (),
    soa: int | None = None,
    extra: tuple[int, ...] = (),
    qtype: str = "A",
) -> bytes:
    """A reply for app.example.org with A records of these TTLs in answer and additional, NS records of
    these TTLs in authority, and an SOA with that TTL."""
    r = DNSRecord.question("app.example.org", qtype).reply()
    r.header.rcode = getattr(RCODE, rcode)
    for ttl in answer:
        r.add_answer(RR("app.example.org", QTYPE.A, rdata=A("10.0.0.1"), ttl=ttl))
    for ttl in ns:
        r.add_auth(RR("example.org", QTYPE.NS, rdata=NS("ns.example.org"), ttl=ttl))
    if soa is not None:
        r.add_auth(RR("example.org", QTYPE.SOA, rdata=SOA("ns.example.org", "h.example.org", (1, 2, 3, 4, 5)), ttl=soa))
    for ttl in extra:
        r.add_ar(RR("ns.example.org", QTYPE.A, rdata=A("10.0.0.2"), ttl=ttl))
    return bytes(r.pack())


@pytest.mark.parametrize(
    ("msg", "want"),
    [
        (reply(answer=(30, 20, 40)), 20),
        (reply(answer=(30,), extra=(7,)), 7),
        (reply(answer=(0,)), 0),
        (reply(answer=(86400,)), MAX_AGE),
        (reply(soa=300), 300),  # NODATA
        (reply(rcode="NXDOMAIN", soa=60), 60),
        (reply(rcode="NXDOMAIN"), MIN_AGE),  # no records at all
        (reply(), MIN_AGE),
        (reply(ns=(600,), extra=(600,)), MIN_AGE),  # a referral
        (reply(rcode="SERVFAIL"), MIN_AGE),
        (reply(rcode="REFUSED", answer=(60,)), MIN_AGE),
        (reply(rcode="NXDOMAIN", answer=(60,)), MIN_AGE),  # an answer with NXDOMAIN is an error to CoreDNS
        (reply(answer=(60,), qtype="AXFR"), MIN_AGE),
        (reply(answer=(60,))[:-3], MIN_AGE),  # does not walk
    ],
)
def test_max_age(msg: bytes, want: int) -> None:
    assert max_age(msg) == want


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(length: int, payload: bool = True) -> bytes:
    """An HTTP/2 frame header declaring `length` bytes (DATA, stream 1), with that payload if `payload`."""
    return length.to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01" + (b"x" * length if payload else b"")


@pytest.mark.parametrize(
    ("stream", "fits"),
    [
        (PREFACE + frame(0) + frame(16384) + frame(10), True),
        (PREFACE + frame(16384) + frame(16385, payload=False), False),
        (PREFACE + frame((1 << 24) - 1, payload=False), False),  # refused on its header, before any payload
        (PREFACE + b"\xff" * 9, False),
    ],
)
@pytest.mark.parametrize("chunk", [1, 7, 9, 100_000])
def test_frame_sizes_refuse_an_oversized_frame_at_its_header(stream: bytes, fits: bool, chunk: int) -> None:
    guard = FrameSizes(16384)
    got = all(guard.fits(stream[i : i + chunk]) for i in range(0, len(stream), chunk))
    assert got == fits
