"""minimal: which replies lose their authority and additional sections, through the chain and the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from dnslib import QTYPE, RR

from corefile import CorefileError, parse
from dnsserver.config import build
from tests.dnstest import Case, rr, serve


def shape(records: list[RR]) -> list[tuple[str, str]]:
    """Owner and type of each record, without TTLs (a cache's answer counts them down)."""
    return sorted((str(r.rname).lower(), QTYPE[r.rtype]) for r in records if r.rtype != QTYPE.OPT)


ZONES = Path(__file__).resolve().parents[2] / "data" / "zones"
SOA = "example.org. 300 IN SOA ns1.example.org. hostmaster.example.org. 2024010101 7200 3600 1209600 300"

CASES = [
    # A successful answer: only the answer section (file would add the NS records and their glue).
    Case("www.example.org.", "A", answer=["www.example.org. 3600 IN A 192.0.2.80"]),
    Case("example.org.", "MX", answer=["example.org. 3600 IN MX 10 mail.example.org."]),
    # Denials keep their SOA.
    Case("nope.example.org.", "A", rcode="NXDOMAIN", ns=[SOA]),
    Case("www.example.org.", "TXT", ns=[SOA]),
]


@pytest.mark.parametrize("cached", [False, True])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.qname}/{c.qtype}")
async def test_minimal(case: Case, cached: bool) -> None:
    corefile = f"example.org {{\n minimal\n {'cache' if cached else ''}\n file db.example.org\n}}"
    async with serve(corefile, str(ZONES / "Corefile")) as s:
        for _ in range(3):  # with cache the later ones come from its stored wire answer (the hot path)
            reply = await s.query(case)
            assert reply.header.rcode == (3 if case.rcode == "NXDOMAIN" else 0)
            assert shape(reply.rr) == shape([rr(a) for a in case.answer])
            assert shape(reply.auth) == shape([rr(a) for a in case.ns])
            assert shape(reply.ar) == []
        assert s.last_fast is cached


async def test_without_minimal_the_sections_are_there() -> None:
    async with serve("example.org {\n file db.example.org\n}", str(ZONES / "Corefile")) as s:
        reply = await s.query(Case("www.example.org.", "A"))
        assert len(reply.auth) == 2


def test_takes_no_arguments() -> None:
    with pytest.raises(CorefileError) as e:
        build(parse(". {\n minimal yes\n}", "Corefile"), 53)
    assert str(e.value).startswith("Corefile:2 - plugin/minimal: Wrong argument count")
