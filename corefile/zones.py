"""Server block keys: ``[SCHEME://]ZONE[:PORT]``, including the reverse-zone CIDR shorthand.

A key names the zone(s) a server block serves and, optionally, the transport and port. ZONE may
be an IP network (``10.0.0.0/24``, ``fd00::/120``) or a single address, which stands for the
matching ``in-addr.arpa.`` / ``ip6.arpa.`` zones. Ports are only recorded when written: the
server decides the default (``DEFAULT_PORTS``, or ``-dns.port`` for plain DNS).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from corefile.errors import CorefileError
from corefile.lexer import Token

DEFAULT_PORTS: dict[str, int] = {"dns": 53, "tls": 853, "quic": 853, "grpc": 443, "https": 443, "https3": 443}

# Text that can only have been meant as an IP network: hex digits, dots and colons, then /BITS.
# It must parse, or it is an error rather than a strange domain name. Names such as RFC 2317's
# "0/26.2.0.192.in-addr.arpa" contain letters after the slash and stay domain names.
_CIDR_SHAPED = re.compile(r"[0-9A-Fa-f:.]+/[0-9]+")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Fail = Callable[[str], CorefileError]


@dataclass(frozen=True, slots=True)
class ZoneAddr:
    """One zone of a server block key, with its transport and (if the key gave one) its port."""

    transport: str  # "dns" | "tls" | "quic" | "grpc" | "https" | "https3"
    zone: str  # lower-case FQDN with trailing dot; the root is "."
    port: int | None  # None: not on the key; the server applies its default

    def __str__(self) -> str:
        base = f"{self.transport}://{self.zone}"
        return base if self.port is None else f"{base}:{self.port}"


def normalize_zone(name: str) -> str:
    """`name` lower-cased and fully qualified; "" and "." are the root."""
    name = name.lower()
    if name in ("", "."):
        return "."
    return name if name.endswith(".") else name + "."


def _network(text: str) -> Network | None:
    """`text` as an IP network (a bare address is its /32 or /128), or None."""
    try:
        # Host bits are masked off, as Go's net.ParseCIDR does for CoreDNS: 10.0.0.1/24 is 10.0.0.0/24.
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def reverse_zones(cidr: str) -> list[str]:
    """The reverse zones covering `cidr`, e.g. "10.0.0.0/24" -> ["0.0.10.in-addr.arpa."].

    Reverse names have one label per octet (IPv4) or per nibble (IPv6), so a prefix between two
    label boundaries is split into every zone at the next longer boundary: a /27 gives 32 zones,
    a /17 gives 128 /24 zones. Raises ValueError("invalid CIDR ...") for anything else.
    """
    net = _network(cidr)
    if net is None:
        raise ValueError(f"invalid CIDR {cidr!r}")
    label_bits = 8 if net.version == 4 else 4
    boundary = -(-net.prefixlen // label_bits) * label_bits  # round up to a label boundary
    labels = boundary // label_bits
    subnets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = (
        [net] if boundary == net.prefixlen else list(net.subnets(new_prefix=boundary)))
    return [_reverse_name(s.network_address, labels) for s in subnets]


def _reverse_name(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, labels: int) -> str:
    """The reverse name of the first `labels` octets/nibbles of `addr`."""
    parts = addr.reverse_pointer.split(".")  # every octet/nibble, reversed, then the two suffix labels
    return ".".join(parts[len(parts) - 2 - labels:]) + "."


def parse_key(token: Token) -> list[ZoneAddr]:
    """The zones a server block key stands for (several for a CIDR off a label boundary)."""
    text = token.text

    def fail(message: str) -> CorefileError:
        return CorefileError(token.file, token.line, message)

    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "dns", text
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        known = ", ".join(DEFAULT_PORTS)
        raise fail(f"unknown scheme '{scheme}' in key '{text}': expected one of {known}")
    if not rest:
        raise fail(f"key '{text}' has no zone")
    host, port = _split_port(rest, text, fail)
    return [ZoneAddr(scheme, zone, port) for zone in _zones(host, fail)]


def _split_port(rest: str, key: str, fail: Fail) -> tuple[str, int | None]:
    """ZONE and PORT of `rest`. An IP network/address is taken whole: its colons are not a port."""
    if _network(rest) is not None or _CIDR_SHAPED.fullmatch(rest) or ":" not in rest:
        return rest, None
    host, _, port = rest.rpartition(":")
    if not port:
        raise fail(f"key '{key}' has no port after ':'")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise fail(f"invalid port '{port}' in key '{key}': expected a number from 1 to 65535")
    return host, int(port)


def _zones(host: str, fail: Fail) -> list[str]:
    """The zone names for the ZONE part of a key."""
    if _network(host) is not None:
        return reverse_zones(host)
    if _CIDR_SHAPED.fullmatch(host):
        raise fail(f"invalid CIDR '{host}'")
    return [normalize_zone(host)]
