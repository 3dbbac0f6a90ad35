"""file: the Corefile parse tables, the answer table over tests/data/zones/db.example.org, reload."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

import pytest

from corefile import CorefileError
from dnsplugins.file import File, Source
from dnsserver.metrics import REGISTRY
from tests.dnstest import Case, Served, plugin_in, serve

ZONES = Path(__file__).resolve().parents[2] / "data" / "zones"
DB = ZONES / "db.example.org"
RELATIVE = ZONES / "db.relative"  # relative names only: loadable for any origin
ORG = "example.org."

SOA = f"{ORG} 3600 IN SOA ns1.{ORG} hostmaster.{ORG} 2024010101 7200 3600 1209600 300"
NEG_SOA = SOA.replace(" 3600 IN SOA", " 300 IN SOA")  # RFC 2308: min(SOA TTL, MINIMUM)
APEX_NS = [f"{ORG} 3600 IN NS ns1.{ORG}", f"{ORG} 3600 IN NS ns2.other.net."]
NS1_ADDRS = [f"ns1.{ORG} 3600 IN A 192.0.2.1", f"ns1.{ORG} 3600 IN AAAA 2001:db8::1"]
WWW = f"www.{ORG} 3600 IN A 192.0.2.80"
RRSIG_WWW = f"www.{ORG} 3600 IN RRSIG A 8 3 3600 20300101000000 20200101000000 12345 {ORG} dGVzdHNpZ25hdHVyZQ=="
REFERRAL_NS = [f"sub.{ORG} 3600 IN NS ns.sub.{ORG}"]
GLUE = [f"ns.sub.{ORG} 3600 IN A 192.0.2.53"]
DS = f"sub.{ORG} 3600 IN DS 12345 8 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE1F4D6B1E1D0C3A8D1E3A1E3A"


def ok(qname: str, qtype: str, answer: list[str], extra: list[str] | None = None) -> Case:
    """A positive authoritative answer: the apex NS records ride along in the authority section."""
    return Case(qname, qtype, answer=answer, ns=APEX_NS, extra=extra or [], aa=True, ordered=True)


def nodata(qname: str, qtype: str = "A") -> Case:
    return Case(qname, qtype, ns=[NEG_SOA], aa=True)


def nxdomain(qname: str, qtype: str = "A") -> Case:
    return Case(qname, qtype, rcode="NXDOMAIN", ns=[NEG_SOA], aa=True)


def referral(qname: str, qtype: str = "A") -> Case:
    return Case(qname, qtype, ns=REFERRAL_NS, extra=GLUE, aa=False)


def passed_on(name: str, qtype: str = "A") -> Case:
    """What whoami (after file) answers: proof that the query was handed on."""
    return Case(name, qtype, extra=[f"{name} 0 IN A 10.240.0.1", f"_udp.{name} 0 IN SRV 0 0 40212 ."])


ANSWERS = [
    # The apex: SOA (with NS in authority), NS (with the in-zone server's addresses), MX (+ target).
    Case(ORG, "SOA", answer=[SOA], ns=APEX_NS, aa=True),
    Case(ORG, "NS", answer=APEX_NS, extra=NS1_ADDRS, aa=True),
    ok(ORG, "MX", [f"{ORG} 3600 IN MX 10 mail.{ORG}"], [f"mail.{ORG} 3600 IN A 192.0.2.25"]),
    nodata(ORG, "A"),
    # Plain data, names compared case-insensitively; SRV gets its target's address.
    ok(f"www.{ORG}", "A", [WWW]),
    ok("WwW.Example.ORG.", "A", [WWW]),
    ok(f"ns1.{ORG}", "AAAA", [f"ns1.{ORG} 3600 IN AAAA 2001:db8::1"]),
    ok(f"txt.{ORG}", "TXT", [f'txt.{ORG} 60 IN TXT "hello world" "semi;colon"']),
    ok(
        f"_sip._tcp.{ORG}",
        "SRV",
        [f"_sip._tcp.{ORG} 3600 IN SRV 0 5 5060 mail.{ORG}"],
        [f"mail.{ORG} 3600 IN A 192.0.2.25"],
    ),
    # Denials carry the SOA, its TTL cut to the MINIMUM.
    nodata(f"www.{ORG}", "AAAA"),
    nodata(f"www.{ORG}", "NS"),  # NS below the apex without a delegation: just a type it lacks
    nxdomain(f"nope.{ORG}"),
    nxdomain(f"a.b.nope.{ORG}", "TXT"),
    nxdomain(f"nope.{ORG}", "SOA"),
    # Empty non-terminals exist: NODATA for them, NXDOMAIN only below them.
    nodata(f"ent.{ORG}"),
    nodata(f"ent.{ORG}", "TXT"),
    nxdomain(f"b.ent.{ORG}"),
    ok(f"a.ent.{ORG}", "A", [f"a.ent.{ORG} 3600 IN A 192.0.2.7"]),
    # CNAMEs: the chain and the target's records; CNAME asked for itself; a target outside the zone,
    # a loop or a missing target end the chain with what was found (NOERROR, as CoreDNS).
    ok(f"alias.{ORG}", "A", [f"alias.{ORG} 3600 IN CNAME www.{ORG}", WWW]),
    ok(f"chain.{ORG}", "A", [f"chain.{ORG} 3600 IN CNAME alias.{ORG}", f"alias.{ORG} 3600 IN CNAME www.{ORG}", WWW]),
    ok(f"chain.{ORG}", "AAAA", [f"chain.{ORG} 3600 IN CNAME alias.{ORG}", f"alias.{ORG} 3600 IN CNAME www.{ORG}"]),
    ok(f"alias.{ORG}", "CNAME", [f"alias.{ORG} 3600 IN CNAME www.{ORG}"]),
    ok(f"out.{ORG}", "A", [f"out.{ORG} 3600 IN CNAME www.example.net."]),
    ok(f"loop1.{ORG}", "A", [f"loop1.{ORG} 3600 IN CNAME loop2.{ORG}", f"loop2.{ORG} 3600 IN CNAME loop1.{ORG}"]),
    ok(f"dangling.{ORG}", "A", [f"dangling.{ORG} 3600 IN CNAME nothing.{ORG}"]),
    ok(f"towild.{ORG}", "A", [f"towild.{ORG} 3600 IN CNAME host.wild.{ORG}", f"host.wild.{ORG} 3600 IN A 192.0.2.99"]),
    # Wildcards: synthesised with the asked name as owner, at any depth below the closest encloser.
    ok(f"foo.wild.{ORG}", "A", [f"foo.wild.{ORG} 3600 IN A 192.0.2.99"]),
    ok(f"FOO.wild.{ORG}", "TXT", [f'foo.wild.{ORG} 3600 IN TXT "wild"']),
    ok(f"a.b.wild.{ORG}", "A", [f"a.b.wild.{ORG} 3600 IN A 192.0.2.99"]),
    nodata(f"foo.wild.{ORG}", "AAAA"),
    nodata(f"wild.{ORG}"),  # the wildcard's parent is an empty non-terminal, never matched by it
    # ... but not for names that exist, even with other types only.
    ok(f"exists.wild.{ORG}", "A", [f"exists.wild.{ORG} 3600 IN A 192.0.2.100"]),
    nodata(f"exists.wild.{ORG}", "TXT"),
    nxdomain(f"deeper.exists.wild.{ORG}"),
    # A wildcard CNAME is chased from the synthesised owner.
    ok(f"x.cn.{ORG}", "A", [f"x.cn.{ORG} 3600 IN CNAME www.{ORG}", WWW]),
    # An empty non-terminal blocks the wildcard above it (RFC 4592 §2.2.2).
    ok(f"other.w2.{ORG}", "A", [f"other.w2.{ORG} 3600 IN A 192.0.2.98"]),
    nodata(f"blocked.w2.{ORG}"),
    nxdomain(f"y.blocked.w2.{ORG}"),
    ok(f"x.blocked.w2.{ORG}", "A", [f"x.blocked.w2.{ORG} 3600 IN A 192.0.2.97"]),
    # Delegations: a referral for the cut and everything under it, glue included; not authoritative.
    referral(f"sub.{ORG}"),
    referral(f"host.sub.{ORG}", "AAAA"),
    referral(f"ns.sub.{ORG}"),  # glue is not an answer
    referral(f"sub.{ORG}", "NS"),
    # ... except DS at the cut, which the parent answers.
    ok(f"sub.{ORG}", "DS", [DS]),
    referral(f"deeper.sub.{ORG}", "DS"),
    # Transfers without the transfer plugin: refused.
    Case(ORG, "AXFR", rcode="REFUSED", proto="tcp"),
    Case(ORG, "IXFR", rcode="REFUSED", proto="tcp"),
    # Outside the zone: handed on.
    passed_on("example.net."),
    passed_on("org."),
]

DNSSEC = [
    Case(f"www.{ORG}", "A", do=True, answer=[WWW, RRSIG_WWW], ns=APEX_NS, aa=True),
    Case(f"x.sub.{ORG}", "A", do=True, ns=[*REFERRAL_NS, DS], extra=GLUE, aa=False),
    Case(f"x.sub.{ORG}", "A", ns=REFERRAL_NS, extra=GLUE),  # no DS without DO
]


def corefile(options: str = "", zones: str = "example.org", db: Path = DB) -> str:
    return f". {{\n    file {db} {zones} {{\n{options}    }}\n    whoami\n}}\n"


async def test_answers() -> None:
    async with serve(corefile()) as s:
        await s.run(ANSWERS)


async def test_dnssec_records_with_do() -> None:
    async with serve(corefile()) as s:
        await s.run(DNSSEC)


async def test_block_zone_is_the_default_origin() -> None:
    async with serve(f"example.org {{\n file {DB}\n}}\n") as s:
        await s.run([ok(f"www.{ORG}", "A", [WWW]), nxdomain(f"nope.{ORG}")])


async def test_fallthrough_only_for_name_errors() -> None:
    async with serve(corefile("        fallthrough\n")) as s:
        await s.run(
            [
                passed_on(f"nope.{ORG}"),
                passed_on(f"b.ent.{ORG}"),
                nodata(f"www.{ORG}", "AAAA"),
                ok(f"www.{ORG}", "A", [WWW]),
                referral(f"host.sub.{ORG}"),
            ]
        )
    async with serve(corefile("        fallthrough example.net\n")) as s:
        await s.run([nxdomain(f"nope.{ORG}")])


async def test_same_file_for_two_origins() -> None:
    async with serve(corefile(zones="example.org example.net", db=RELATIVE)) as s:
        await s.run(
            [
                Case(
                    "www.example.net.",
                    answer=["www.example.net. 300 IN A 192.0.2.2"],
                    ns=["example.net. 300 IN NS ns.example.net."],
                ),
                Case(
                    "www.example.org.",
                    answer=["www.example.org. 300 IN A 192.0.2.2"],
                    ns=["example.org. 300 IN NS ns.example.org."],
                ),
                Case(
                    "nope.example.net.",
                    rcode="NXDOMAIN",
                    ns=["example.net. 60 IN SOA ns.example.net. hostmaster.example.net. 7 7200 3600 1209600 60"],
                ),
            ]
        )


async def test_root_zone() -> None:
    soa = ". 300 IN SOA ns. hostmaster. 7 7200 3600 1209600 60"
    async with serve(f". {{\n file {RELATIVE}\n}}\n") as s:
        await s.run(
            [
                Case(".", "SOA", answer=[soa], ns=[". 300 IN NS ns."], aa=True),
                Case("www.", answer=["www. 300 IN A 192.0.2.2"], ns=[". 300 IN NS ns."]),
                Case("nope.", rcode="NXDOMAIN", ns=[soa.replace("300", "60", 1)]),
                Case("a.b.www.", rcode="NXDOMAIN", ns=[soa.replace("300", "60", 1)]),
            ]
        )


async def test_longest_zone_wins(tmp_path: Path) -> None:
    child = tmp_path / "db.sub"
    child.write_text("@ 60 IN SOA ns hostmaster 1 1 1 1 60\nwww A 192.0.2.200\n")
    text = f". {{\n file {DB} example.org\n file {child} sub.example.org\n}}\n"
    async with serve(text) as s:
        await s.run(
            [
                Case(f"www.sub.{ORG}", answer=[f"www.sub.{ORG} 60 IN A 192.0.2.200"], aa=True),
                ok(f"www.{ORG}", "A", [WWW]),
            ]
        )


# -- the Corefile ---------------------------------------------------------------------------------


def sources_of(text: str, filename: str = "Corefile") -> list[Source]:
    return plugin_in(File, text, filename).config.sources


def src_tuple(s: Source) -> tuple[object, ...]:
    return (s.origin, s.path, s.file, s.reload, s.by_mtime, s.fall.enabled, s.fall.zones)


PARSE_CASES = [
    (f"example.org {{\n file {DB}\n}}", [(ORG, str(DB), str(DB), 60.0, False, False, [])]),
    (
        f". {{\n file {RELATIVE} Example.ORG example.net\n}}",
        [
            (ORG, str(RELATIVE), str(RELATIVE), 60.0, False, False, []),
            ("example.net.", str(RELATIVE), str(RELATIVE), 60.0, False, False, []),
        ],
    ),
    (
        f"example.org {{\n file {DB} {{\n  reload 30s\n  reload_by_mtime\n  fallthrough\n }}\n}}",
        [(ORG, str(DB), str(DB), 30.0, True, True, ["."])],
    ),
    (
        f"example.org {{\n file {DB} {{\n  reload 0\n  fallthrough sub.example.org\n  upstream\n }}\n}}",
        [(ORG, str(DB), str(DB), 0.0, False, True, ["sub.example.org."])],
    ),
    # Each occurrence has its own options.
    (
        f". {{\n file {DB} example.org {{\n  reload 1h\n }}\n file {RELATIVE} example.net\n}}",
        [
            (ORG, str(DB), str(DB), 3600.0, False, False, []),
            ("example.net.", str(RELATIVE), str(RELATIVE), 60.0, False, False, []),
        ],
    ),
]


@pytest.mark.parametrize(("text", "want"), PARSE_CASES)
def test_parse(text: str, want: list[tuple[object, ...]]) -> None:
    assert [src_tuple(s) for s in sources_of(text)] == want


def test_relative_path_is_taken_from_the_corefile_directory(tmp_path: Path) -> None:
    shutil.copy(DB, tmp_path / "db.example.org")
    (src,) = sources_of("example.org {\n file db.example.org\n}", str(tmp_path / "Corefile"))
    assert (src.path, src.file) == (str(tmp_path / "db.example.org"), "db.example.org")
    assert src.zone is not None
    assert src.zone.serial == 2024010101


C3 = "Corefile:3 - plugin/file: "
PARSE_ERRORS = [
    (
        "example.org {\n file\n}",
        "Corefile:2 - plugin/file: Wrong argument count or unexpected line ending after 'file'",
    ),
    (f"example.org {{\n file {DB} {{\n  reload\n }}\n}}", C3 + "reload duration value is expected"),
    (f"example.org {{\n file {DB} {{\n  reload 1s 2s\n }}\n}}", C3 + "reload duration value is expected"),
    (f"example.org {{\n file {DB} {{\n  reload soon\n }}\n}}", C3 + 'time: invalid duration "soon"'),
    (f"example.org {{\n file {DB} {{\n  reload -1s\n }}\n}}", C3 + "invalid reload duration '-1s'"),
    (
        f"example.org {{\n file {DB} {{\n  reload_by_mtime yes\n }}\n}}",
        C3 + "Wrong argument count or unexpected line ending after 'yes'",
    ),
    (f"example.org {{\n file {DB} {{\n  transfer to *\n }}\n}}", C3 + "unknown property 'transfer'"),
    # A file that cannot be opened is fatal only when it will never be tried again.
    (
        "example.org {\n file /nonexistent/db {\n  reload 0\n }\n}",
        "Corefile:2 - plugin/file: open /nonexistent/db: No such file or directory",
    ),
]


@pytest.mark.parametrize(("text", "message"), PARSE_ERRORS)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        sources_of(text)
    assert str(e.value) == message


# Zone-file mistakes surface as Corefile errors naming the zone file and line (as written).
ZONE_ERRORS = [
    (
        "@ 60 IN SOA ns hm 1 1 1 1 1\nwww A 192.0.2.1\nwww BOGUS x\n",
        "db.example.org:3 - plugin/file: unknown record type 'BOGUS'",
    ),
    ("www A 192.0.2.1\n", 'db.example.org:1 - plugin/file: no SOA record for zone "example.org."'),
    (
        "@ 60 IN SOA ns hm 1 1 1 1 1\n\n\nwww.example.com. A 192.0.2.1\n",
        'db.example.org:4 - plugin/file: out-of-zone record: "www.example.com." is not in zone "example.org."',
    ),
    (
        "@ 60 IN SOA ns hm ( 1 1 1 1 1\nwww A 192.0.2.1\n",
        "db.example.org:1 - plugin/file: unterminated parenthesis: '(' is never closed",
    ),
]


@pytest.mark.parametrize(("zone", "message"), ZONE_ERRORS)
def test_zone_file_errors_name_file_and_line(zone: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "db.example.org").write_text(zone)
    with pytest.raises(CorefileError) as e:
        sources_of("example.org {\n file db.example.org\n}", str(tmp_path / "Corefile"))
    assert str(e.value) == message


async def test_missing_file_is_a_warning_then_servfail_until_it_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="portolan")
    db = tmp_path / "db.example.org"
    async with serve(corefile(db=db)) as s:
        assert (
            f'[WARNING] plugin/file: Failed to open "{db}": No such file or directory: trying again in 1m'
            in caplog.messages
        )
        await s.run([Case(f"www.{ORG}", rcode="SERVFAIL")])
        shutil.copy(DB, db)
        assert file_in(s).load(source(s)) is True
        await s.run([ok(f"www.{ORG}", "A", [WWW])])


# -- reload ---------------------------------------------------------------------------------------


def file_in(s: Served) -> File:
    return next(p for p in s.config.plugins if isinstance(p, File))


def source(s: Served, origin: str = ORG) -> Source:
    return file_in(s).sources[origin]


def rewrite(path: Path, text: str) -> None:
    """Rewrite `path` with a modification time surely later than the last read."""
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


ZONE_V1 = "@ 60 IN SOA ns hostmaster 1 1 1 1 60\n@ NS ns\nns A 192.0.2.1\nwww A 192.0.2.10\n"


def www(ip: str) -> Case:
    return Case(f"www.{ORG}", answer=[f"www.{ORG} 60 IN A {ip}"], ns=[f"{ORG} 60 IN NS ns.{ORG}"])


async def test_reload_swaps_only_on_serial_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="portolan")
    db = tmp_path / "db.example.org"
    db.write_text(ZONE_V1)
    async with serve(f"example.org {{\n file {db} {{\n  reload 0\n }}\n}}") as s:
        f, src = file_in(s), source(s)
        await s.run([www("192.0.2.10")])
        # New data, same serial: not used.
        rewrite(db, ZONE_V1.replace("192.0.2.10", "192.0.2.11"))
        assert f.load(src) is False
        await s.run([www("192.0.2.10")])
        # Serial bumped: swapped in, and said so.
        rewrite(db, ZONE_V1.replace("192.0.2.10", "192.0.2.12").replace(" 1 1 1 1 60", " 2 1 1 1 60"))
        assert f.load(src) is True
        await s.run([www("192.0.2.12")])
        assert (
            f'[INFO] plugin/file: Successfully reloaded zone "example.org." in "{db}" with serial 2' in caplog.messages
        )
        # A broken file: logged with file:line, the old zone keeps serving.
        rewrite(db, ZONE_V1.replace(" 1 1 1 1 60", " 3 1 1 1 60").replace("www A 192.0.2.10", "www A 192.0.2"))
        assert f.load(src) is False
        await s.run([www("192.0.2.12")])
        assert any(
            m.startswith(
                '[ERROR] plugin/file: Failed to reload zone "example.org.": '
                f"{db}:4 - bad A record: bad IPv4 address '192.0.2'"
            )
            for m in caplog.messages
        )
        # The file disappears: logged, still serving.
        db.unlink()
        assert f.load(src) is False
        await s.run([www("192.0.2.12")])
        assert any("Failed to open zone" in m for m in caplog.messages)


async def test_reload_by_mtime_ignores_the_serial(tmp_path: Path) -> None:
    db = tmp_path / "db.example.org"
    db.write_text(ZONE_V1)
    async with serve(f"example.org {{\n file {db} {{\n  reload 0\n  reload_by_mtime\n }}\n}}") as s:
        f, src = file_in(s), source(s)
        assert f.load(src) is False  # mtime unchanged: not even read
        rewrite(db, ZONE_V1.replace("192.0.2.10", "192.0.2.13"))
        assert f.load(src) is True
        await s.run([www("192.0.2.13")])


async def test_background_reload(tmp_path: Path) -> None:
    db = tmp_path / "db.example.org"
    db.write_text(ZONE_V1)
    async with serve(f"example.org {{\n file {db} {{\n  reload 20ms\n }}\n}}") as s:
        job = file_in(s)._jobs[0]
        assert job.task is not None
        rewrite(db, ZONE_V1.replace("192.0.2.10", "192.0.2.14").replace(" 1 1 1 1 60", " 5 1 1 1 60"))
        for _ in range(250):
            if source(s).zone is not None and source(s).zone.serial == 5:
                break
            await asyncio.sleep(0.02)
        await s.run([www("192.0.2.14")])
    assert job.task is None


async def test_no_background_job_when_reload_is_zero(tmp_path: Path) -> None:
    db = tmp_path / "db.example.org"
    db.write_text(ZONE_V1)
    async with serve(f"example.org {{\n file {db} {{\n  reload 0\n }}\n}}") as s:
        assert file_in(s)._jobs == []


async def test_entries_metric() -> None:
    async with serve(corefile()):
        assert REGISTRY.get_sample_value("coredns_file_entries", {"dns_name": ORG}) == 28
