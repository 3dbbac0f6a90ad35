"""Hosts files (dnsplugins/hosts): ``parse_hosts`` over the text for zones example.org. and the
reverse zones, then the Index the plugin answers from, and a look-up of every name.

Invariant: a hosts file has no errors (a line that is not ``IP NAME...`` is skipped, as CoreDNS
skips it), so nothing may be raised: every name kept is inside the zones, every address parses,
and every record the Index makes (A, AAAA, PTR, wildcard answers) packs to wire.
"""

from __future__ import annotations

import ipaddress

from dnslib import DNSBuffer

from dnsplugins.hosts import Index, parse_hosts
from dnsserver.plugin import match_zone
from fuzz import Failure

ZONES = ["example.org.", "in-addr.arpa.", "ip6.arpa."]


def check(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    hosts = parse_hosts(text, ZONES, True)
    for table in (hosts.v4, hosts.v6):
        for name, ips in table.items():
            if match_zone(ZONES, name) is None:
                raise Failure(f"{name} kept outside the zones")
            for ip in ips:
                ipaddress.ip_address(ip)
    index = Index([hosts], 3600)
    names = [*hosts.v4, *hosts.v6, *(f"x.{parent}" for parent in (*hosts.wild4, *hosts.wild6))]
    for name in names:
        found = index.lookup(name)
        if found is None:
            raise Failure(f"{name} kept but not found")
        for rr in (*found[0], *found[1]):
            rr.pack(DNSBuffer())
    for records in index.ptr.values():
        for rr in records:
            rr.pack(DNSBuffer())
