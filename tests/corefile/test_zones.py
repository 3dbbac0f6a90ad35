"""Server block keys, zone normalisation and the reverse-zone CIDR shorthand."""

from __future__ import annotations

import pytest

from corefile import DEFAULT_PORTS, CorefileError, Token, ZoneAddr, normalize_zone, parse_key, reverse_zones

NORMALIZE = [
    ("", "."),
    (".", "."),
    ("example.org", "example.org."),
    ("Example.ORG.", "example.org."),
    ("cluster.local", "cluster.local."),
    ("in-addr.arpa", "in-addr.arpa."),
]


@pytest.mark.parametrize(("name", "want"), NORMALIZE)
def test_normalize_zone(name, want):
    assert normalize_zone(name) == want


# (cidr, number of zones, first zone, last zone)
REVERSE = [
    ("10.0.0.0/24", 1, "0.0.10.in-addr.arpa.", "0.0.10.in-addr.arpa."),
    ("10.0.0.0/8", 1, "10.in-addr.arpa.", "10.in-addr.arpa."),
    ("172.16.0.0/16", 1, "16.172.in-addr.arpa.", "16.172.in-addr.arpa."),
    ("0.0.0.0/0", 1, "in-addr.arpa.", "in-addr.arpa."),
    ("10.0.0.0/27", 32, "0.0.0.10.in-addr.arpa.", "31.0.0.10.in-addr.arpa."),
    ("10.0.0.0/17", 128, "0.0.10.in-addr.arpa.", "127.0.10.in-addr.arpa."),
    ("10.0.0.0/15", 2, "0.10.in-addr.arpa.", "1.10.in-addr.arpa."),
    ("10.0.0.64/26", 64, "64.0.0.10.in-addr.arpa.", "127.0.0.10.in-addr.arpa."),
    ("10.0.0.1/24", 1, "0.0.10.in-addr.arpa.", "0.0.10.in-addr.arpa."),  # host bits are masked
    ("192.168.1.10", 1, "10.1.168.192.in-addr.arpa.", "10.1.168.192.in-addr.arpa."),  # bare address
    ("fd00::/120", 1, "0.0." + "0." * 26 + "d.f.ip6.arpa.", "0.0." + "0." * 26 + "d.f.ip6.arpa."),
    ("fd00::/8", 1, "d.f.ip6.arpa.", "d.f.ip6.arpa."),
    ("fd00::/7", 2, "c.f.ip6.arpa.", "d.f.ip6.arpa."),  # 7 is off a nibble: two /8 zones
    ("2001:db8::/126", 4, "0." + "0." * 23 + "8.b.d.0.1.0.0.2.ip6.arpa.",
     "3." + "0." * 23 + "8.b.d.0.1.0.0.2.ip6.arpa."),
    ("::/0", 1, "ip6.arpa.", "ip6.arpa."),
    ("::1", 1, "1." + "0." * 31 + "ip6.arpa.", "1." + "0." * 31 + "ip6.arpa."),
]


@pytest.mark.parametrize(("cidr", "count", "first", "last"), REVERSE, ids=[c[0] for c in REVERSE])
def test_reverse_zones(cidr, count, first, last):
    zones = reverse_zones(cidr)
    assert (len(zones), zones[0], zones[-1]) == (count, first, last)
    assert len(set(zones)) == count


@pytest.mark.parametrize("cidr", ["", "10.0.0.0/33", "300.0.0.0/8", ":fd00::/64", "fd00::/129",
                                  "example.org", "10.0.0.0/", "/24"])
def test_reverse_zones_invalid(cidr):
    with pytest.raises(ValueError, match="invalid CIDR"):
        reverse_zones(cidr)


# (key, expected str() of every ZoneAddr)
KEYS = [
    (".", ["dns://."]),
    (".:53", ["dns://.:53"]),
    (":1053", ["dns://.:1053"]),
    ("example.org", ["dns://example.org."]),
    ("Example.ORG:1053", ["dns://example.org.:1053"]),
    ("example.org.", ["dns://example.org."]),
    ("dns://example.org:53", ["dns://example.org.:53"]),
    ("DNS://example.org", ["dns://example.org."]),
    ("tls://example.org", ["tls://example.org."]),
    ("tls://.:853", ["tls://.:853"]),
    ("quic://example.org:8853", ["quic://example.org.:8853"]),
    ("grpc://example.org", ["grpc://example.org."]),
    ("https://example.org:8443", ["https://example.org.:8443"]),
    ("https3://example.org", ["https3://example.org."]),
    ("10.0.0.0/24", ["dns://0.0.10.in-addr.arpa."]),
    ("10.0.0.0/24:1053", ["dns://0.0.10.in-addr.arpa.:1053"]),
    ("dns://10.0.0.0/24:1053", ["dns://0.0.10.in-addr.arpa.:1053"]),
    ("10.0.0.1", ["dns://1.0.0.10.in-addr.arpa."]),
    ("10.0.0.1:53", ["dns://1.0.0.10.in-addr.arpa.:53"]),
    ("fd00::/120", ["dns://0.0." + "0." * 26 + "d.f.ip6.arpa."]),
    ("fd00::/8:53", ["dns://d.f.ip6.arpa.:53"]),
    ("fd00::53", ["dns://3.5." + "0." * 28 + "d.f.ip6.arpa."]),  # an address is taken whole: no port
    ("tls://10.0.0.0/8", ["tls://10.in-addr.arpa."]),
    ("10.0.0.0/15:53", ["dns://0.10.in-addr.arpa.:53", "dns://1.10.in-addr.arpa.:53"]),
    ("0/26.2.0.192.in-addr.arpa", ["dns://0/26.2.0.192.in-addr.arpa."]),  # RFC 2317 name, not a CIDR
    ("example.org:65535", ["dns://example.org.:65535"]),
]


@pytest.mark.parametrize(("key", "want"), KEYS, ids=[k[0] for k in KEYS])
def test_parse_key(key, want):
    assert [str(z) for z in parse_key(Token(key, "Corefile", 1))] == want


def test_parse_key_expansion():
    zones = parse_key(Token("10.0.0.0/27", "Corefile", 1))
    assert len(zones) == 32
    assert all(z.port is None and z.transport == "dns" for z in zones)
    assert len(parse_key(Token("dns://10.0.0.0/17:53", "Corefile", 1))) == 128


# (key, fragment of the message); every error is reported at the key's FILE:LINE
KEY_ERRORS = [
    ("unix://example.org", "unknown scheme 'unix'"),
    ("udp://example.org", "unknown scheme 'udp'"),
    ("dns://", "has no zone"),
    ("example.org:", "has no port after ':'"),
    ("example.org:0", "invalid port '0'"),
    ("example.org:65536", "invalid port '65536'"),
    ("example.org:dns", "invalid port 'dns'"),
    ("example.org:-1", "invalid port '-1'"),
    ("10.0.0.0/33", "invalid CIDR '10.0.0.0/33'"),
    ("10.0.0.0/33:53", "invalid CIDR '10.0.0.0/33'"),
    ("300.0.0.0/8", "invalid CIDR '300.0.0.0/8'"),
    (":fd00::/64", "invalid CIDR ':fd00::/64'"),
    ("fd00::/129", "invalid CIDR 'fd00::/129'"),
]


@pytest.mark.parametrize(("key", "fragment"), KEY_ERRORS, ids=[k[0] for k in KEY_ERRORS])
def test_parse_key_errors(key, fragment):
    with pytest.raises(CorefileError) as e:
        parse_key(Token(key, "conf/Corefile", 7))
    assert str(e.value).startswith("conf/Corefile:7 - ")
    assert fragment in e.value.message


def test_zone_addr():
    assert str(ZoneAddr("dns", "example.org.", 53)) == "dns://example.org.:53"
    assert str(ZoneAddr("tls", ".", None)) == "tls://."
    assert ZoneAddr("dns", ".", 53) == ZoneAddr("dns", ".", 53)
    assert DEFAULT_PORTS == {"dns": 53, "tls": 853, "quic": 853, "grpc": 443, "https": 443, "https3": 443}
