"""The zone-file reader: what master-file text becomes, and the exact FILE:LINE of every mistake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dnsplugins.file.lexer import ZoneFileError, split_labels
from dnsplugins.file.rdata import parse_ttl
from dnsplugins.file.zonefile import parse_file, parse_text
from tests.dnstest import rr, rr_text

ORG = "example.org."
SOA_LINE = "@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n"
SOA = f"{ORG} 3600 IN SOA ns1.{ORG} hostmaster.{ORG} 1 7200 3600 1209600 300"


def records(text: str, origin: str = ORG) -> list[str]:
    return [rr_text(r.rr) for r in parse_text(text, "db", origin).records]


def want(*lines: str) -> list[str]:
    return [rr_text(rr(x)) for x in lines]


PARSE_CASES = [
    (
        "origin, $TTL, @, relative and absolute names, a blank owner, parentheses and comments",
        "$ORIGIN example.org.\n$TTL 300\n@ IN SOA ns1 hostmaster ( 1 ; serial\n 7200 3600\n 1209600 300 ) ; end\n"
        "  IN NS ns1\n  IN NS ns.other.net.\nns1 A 192.0.2.1\n  AAAA 2001:db8::1\n\n; a comment line\n"
        "www.example.org. A 192.0.2.2\n",
        [
            f"{ORG} 300 IN SOA ns1.{ORG} hostmaster.{ORG} 1 7200 3600 1209600 300",
            f"{ORG} 300 IN NS ns1.{ORG}",
            f"{ORG} 300 IN NS ns.other.net.",
            f"ns1.{ORG} 300 IN A 192.0.2.1",
            f"ns1.{ORG} 300 IN AAAA 2001:db8::1",
            f"www.{ORG} 300 IN A 192.0.2.2",
        ],
    ),
    (
        "the origin comes from the Corefile when the file has no $ORIGIN",
        SOA_LINE + "www A 192.0.2.2\n",
        [SOA, f"www.{ORG} 3600 IN A 192.0.2.2"],
    ),
    (
        "TTL and class in either order, or left out",
        SOA_LINE + "a 60 IN A 192.0.2.1\nb IN 61 A 192.0.2.2\nc CLASS1 A 192.0.2.3\nd A 192.0.2.4\n",
        [
            SOA,
            f"a.{ORG} 60 IN A 192.0.2.1",
            f"b.{ORG} 61 IN A 192.0.2.2",
            f"c.{ORG} 61 IN A 192.0.2.3",
            f"d.{ORG} 61 IN A 192.0.2.4",
        ],
    ),
    (
        "without $TTL: the SOA takes its MINIMUM, then the last TTL written is the default",
        "@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\nw A 192.0.2.1\nx 120 A 192.0.2.2\ny A 192.0.2.3\n"
        "$TTL 30\nz A 192.0.2.4\n",
        [
            f"{ORG} 300 IN SOA ns1.{ORG} hostmaster.{ORG} 1 7200 3600 1209600 300",
            f"w.{ORG} 300 IN A 192.0.2.1",
            f"x.{ORG} 120 IN A 192.0.2.2",
            f"y.{ORG} 120 IN A 192.0.2.3",
            f"z.{ORG} 30 IN A 192.0.2.4",
        ],
    ),
    (
        "$TTL wins over the last TTL written",
        "$TTL 1h\n@ SOA ns1 hostmaster 1 2h 1h 2w 5m\nx 10 A 192.0.2.2\ny A 192.0.2.3\n",
        [
            f"{ORG} 3600 IN SOA ns1.{ORG} hostmaster.{ORG} 1 7200 3600 1209600 300",
            f"x.{ORG} 10 IN A 192.0.2.2",
            f"y.{ORG} 3600 IN A 192.0.2.3",
        ],
    ),
    (
        "$ORIGIN relative to the current origin; names are lower-cased; escapes in names",
        SOA_LINE + "$ORIGIN Sub\nWWW A 192.0.2.1\n\\065bc A 192.0.2.2\n$ORIGIN example.org.\nback A 192.0.2.3\n",
        [
            SOA,
            f"www.sub.{ORG} 3600 IN A 192.0.2.1",
            f"abc.sub.{ORG} 3600 IN A 192.0.2.2",
            f"back.{ORG} 3600 IN A 192.0.2.3",
        ],
    ),
    (
        "TXT: quoted strings keep spaces and semicolons, escapes, bare words, several strings, empty",
        SOA_LINE + 't TXT "hello world; not a comment" bare "q\\"uote" "\\065\\066" ""\n',
        [SOA, f't.{ORG} 3600 IN TXT "hello world; not a comment" "bare" "q\\"uote" "AB" ""'],
    ),
    (
        "name-bearing types: @ and relative targets, the root as a target",
        SOA_LINE + "@ MX 10 @\n@ MX 20 mail.other.net.\n_x._tcp SRV 1 2 3 .\n_y._udp SRV 0 0 53 ns1\n"
        "c CNAME www\np PTR host\nsub NS ns.sub\n",
        [
            SOA,
            f"{ORG} 3600 IN MX 10 {ORG}",
            f"{ORG} 3600 IN MX 20 mail.other.net.",
            f"_x._tcp.{ORG} 3600 IN SRV 1 2 3 .",
            f"_y._udp.{ORG} 3600 IN SRV 0 0 53 ns1.{ORG}",
            f"c.{ORG} 3600 IN CNAME www.{ORG}",
            f"p.{ORG} 3600 IN PTR host.{ORG}",
            f"sub.{ORG} 3600 IN NS ns.sub.{ORG}",
        ],
    ),
    (
        "CAA, HINFO and the DNSSEC types dnslib reads",
        SOA_LINE + '@ CAA 0 issue "letsencrypt.org"\nh HINFO "PC" "Linux"\n'
        "@ DNSKEY 257 3 8 ( AwEA\n ag== )\nsub DS 12345 8 2 ( 49FD46E6 C4B45C55 )\n"
        "@ RRSIG SOA 8 2 3600 20300101000000 20200101000000 12345 example.org. c2ln\n",
        [
            SOA,
            f'{ORG} 3600 IN CAA 0 issue "letsencrypt.org"',
            f'h.{ORG} 3600 IN HINFO "PC" "Linux"',
            f"{ORG} 3600 IN DNSKEY 257 3 8 AwEAag==",
            f"sub.{ORG} 3600 IN DS 12345 8 2 49FD46E6C4B45C55",
            f"{ORG} 3600 IN RRSIG SOA 8 2 3600 20300101000000 20200101000000 12345 {ORG} c2ln",
        ],
    ),
    (
        "RFC 3597: TYPEnnn and generic rdata, also for a known type",
        SOA_LINE + "x TYPE1 192.0.2.9\ny A \\# 4 C0000201\n",
        [SOA, f"x.{ORG} 3600 IN A 192.0.2.9", f"y.{ORG} 3600 IN A 192.0.2.1"],
    ),
    (
        "CRLF line endings and tabs",
        SOA_LINE.replace("\n", "\r\n") + "www\tIN\tA\t192.0.2.1\r\n",
        [SOA, f"www.{ORG} 3600 IN A 192.0.2.1"],
    ),
    (
        "the root zone",
        "@ 60 IN SOA a.root. b.root. 1 1 1 1 1\ncom. NS a.gtld.\n",
        ["@ 60 IN SOA a.root. b.root. 1 1 1 1 1".replace("@", "."), "com. 60 IN NS a.gtld."],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [(c[1], c[2]) for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_parse(text: str, expected: list[str]) -> None:
    origin = "." if "a.root." in text else ORG
    assert records(text, origin) == want(*expected)


def test_spf_is_read_like_txt() -> None:
    # dnslib has no SPF class (so rr() cannot build the expectation): compare the text.
    assert records(SOA_LINE + 'spf SPF "v=spf1 -all"\n')[1] == f'spf.{ORG} 3600 in spf "v=spf1 -all"'


def test_records_remember_their_line_and_the_serial() -> None:
    z = parse_text("; header\n$TTL 60\n@ SOA ns hm (\n 42 1 1 1 1 )\n\nwww A 192.0.2.1\n", "db", ORG)
    assert [(r.file, r.line) for r in z.records] == [("db", 3), ("db", 6)]
    assert z.serial == 42


def test_include_is_relative_to_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "zones").mkdir()
    (tmp_path / "zones" / "db.main").write_text(
        SOA_LINE + "$INCLUDE inc/hosts\n$INCLUDE inc/sub sub.example.org.\nafter A 192.0.2.9\n"
    )
    (tmp_path / "zones" / "inc").mkdir()
    (tmp_path / "zones" / "inc" / "hosts").write_text("www A 192.0.2.1\n  AAAA 2001:db8::1\n")
    (tmp_path / "zones" / "inc" / "sub").write_text("$ORIGIN deeper.sub.example.org.\nx A 192.0.2.2\n")
    z = parse_file(str(tmp_path / "zones" / "db.main"), "zones/db.main", ORG)
    # The origin and owner come back after each $INCLUDE: `after` is in example.org.
    assert [rr_text(r.rr) for r in z.records] == want(
        SOA,
        f"www.{ORG} 3600 IN A 192.0.2.1",
        f"www.{ORG} 3600 IN AAAA 2001:db8::1",
        f"x.deeper.sub.{ORG} 3600 IN A 192.0.2.2",
        f"after.{ORG} 3600 IN A 192.0.2.9",
    )
    assert [(r.file, r.line) for r in z.records] == [
        ("zones/db.main", 1),
        ("zones/inc/hosts", 1),
        ("zones/inc/hosts", 2),
        ("zones/inc/sub", 2),
        ("zones/db.main", 4),
    ]


# (zone text, "LINE - message"): the file is always "db".
ERRORS = [
    ("www A 192.0.2.1\n", '1 - no SOA record for zone "example.org."'),
    (SOA_LINE + "www 60 IN FOO x\n", "2 - unknown record type 'FOO'"),
    (SOA_LINE + "www 60 IN\n", "2 - missing record type"),
    (SOA_LINE + 'www 60 IN "A" 192.0.2.1\n', "2 - unknown record type 'A'"),
    (SOA_LINE + "www AXFR x\n", "2 - type AXFR cannot be a record in a zone"),
    (SOA_LINE + "\nwww A 192.0.2\n", "3 - bad A record: bad IPv4 address '192.0.2'"),
    (SOA_LINE + "www A 192.0.2.1 192.0.2.2\n", "2 - bad A record: want 1 field, got 2"),
    (SOA_LINE + "www A\n", "2 - bad A record: want 1 field, got 0"),
    (SOA_LINE + "www AAAA 192.0.2.1\n", "2 - bad AAAA record: bad IPv6 address '192.0.2.1'"),
    (SOA_LINE + "@ MX 70000 mail\n", "2 - bad MX record: bad preference '70000'"),
    (SOA_LINE + "s SRV 0 0 (\n 99999 target )\n", "3 - bad SRV record: bad port '99999'"),
    ("@ SOA ns hm 1 2 3 4\n", "1 - bad SOA record: want 7 fields, got 6"),
    ("@ SOA ns hm x 2 3 4 5\n", "1 - bad SOA record: bad serial 'x'"),
    ("@ SOA ns hm 1 2 3 4 5y\n", "1 - bad SOA record: bad minimum '5y'"),
    (SOA_LINE + 't TXT "' + "x" * 256 + '"\n', "2 - bad TXT record: character-string longer than 255 octets"),
    (SOA_LINE + "t TXT \\999\n", "2 - bad TXT record: escape \\999 is not a byte"),
    (SOA_LINE + "c CAA 0 is-sue x\n", "2 - bad CAA record: bad CAA tag 'is-sue'"),
    (SOA_LINE + "x TYPE65280 \\# 3 ABCD\n", "2 - bad TYPE65280 record: generic rdata is 2 octets, not 3"),
    (
        SOA_LINE + "x TYPE65280 12\n",
        "2 - bad TYPE65280 record: type TYPE65280 is only supported in the generic form '\\# LENGTH HEX'",
    ),
    (SOA_LINE + "sub DS 1 2\n", "2 - bad DS record: IndexError: list index out of range"),
    (SOA_LINE + "www 1x A 192.0.2.1\n", "2 - bad TTL '1x'"),
    (SOA_LINE + "www 2147483648 A 192.0.2.1\n", "2 - bad TTL '2147483648'"),
    ("$TTL forever\n" + SOA_LINE, "1 - bad TTL 'forever'"),
    ("$TTL\n", "1 - $TTL takes 1 argument(s), got 0"),
    ("$ORIGIN a. b.\n", "1 - $ORIGIN takes 1 argument(s), got 2"),
    ("$GENERATE 1-10 h$ A 192.0.2.$\n", "1 - unsupported directive $GENERATE"),
    (SOA_LINE + "$INCLUDE missing.db\n", "2 - $INCLUDE missing.db: No such file or directory"),
    # fuzz/corpus/zonefile/crash-include-nul: open() raised ValueError, not a line-numbered error
    (SOA_LINE + "$INCLUDE a\0b\n", "2 - $INCLUDE a\0b: embedded null byte"),
    (SOA_LINE + "www CH A 192.0.2.1\n", "2 - class CH is not supported (only IN)"),
    ("  A 192.0.2.1\n", "1 - no owner name: the first record must name its owner"),
    (
        SOA_LINE + "www.example.com. A 192.0.2.1\n",
        '2 - out-of-zone record: "www.example.com." is not in zone "example.org."',
    ),
    (SOA_LINE + "org. A 192.0.2.1\n", '2 - out-of-zone record: "org." is not in zone "example.org."'),
    (
        SOA_LINE + "sub SOA ns hm 1 2 3 4 5\n",
        '2 - SOA record for "sub.example.org." is not at the zone apex "example.org."',
    ),
    (SOA_LINE + "\n@ SOA ns hm 2 2 3 4 5\n", "3 - second SOA record (the first is at db:1)"),
    ("@ SOA ns hm ( 1 2 3 4 5\nwww A 192.0.2.1\n", "1 - unterminated parenthesis: '(' is never closed"),
    (SOA_LINE + "www A 192.0.2.1 )\n", "2 - unbalanced ')' without '('"),
    (SOA_LINE + 'www TXT "open\n', "2 - unterminated quoted string"),
    (SOA_LINE + "a..b A 192.0.2.1\n", "2 - bad name 'a..b': empty label"),
    (SOA_LINE + "x" * 64 + " A 192.0.2.1\n", f"2 - bad name '{'x' * 64}': label longer than 63 octets"),
    (
        SOA_LINE + "c CNAME " + "a." * 128 + "\n",
        "2 - bad CNAME record: bad name '" + "a." * 128 + "': name longer than 255 octets",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ZoneFileError) as e:
        parse_text(text, "db", ORG)
    assert str(e.value) == "db:" + message


def test_an_error_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "db").write_text(SOA_LINE + "$INCLUDE part\n")
    (tmp_path / "part").write_text("ok A 192.0.2.1\n\nbad A 300.0.0.1\n")
    with pytest.raises(ZoneFileError) as e:
        parse_file(str(tmp_path / "db"), "db", ORG)
    assert str(e.value) == "part:3 - bad A record: bad IPv4 address '300.0.0.1'"


def test_include_cycle_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "db").write_text(SOA_LINE + "$INCLUDE db2\n")
    (tmp_path / "db2").write_text("$INCLUDE db2\n")
    with pytest.raises(ZoneFileError) as e:
        parse_file(str(tmp_path / "db"), "db", ORG)
    assert str(e.value) == "db2:1 - $INCLUDE nested more than 8 deep"


TTLS = [("0", 0), ("300", 300), ("1h30m", 5400), ("2D", 172800), ("1w1s", 604801), ("2147483647", 2**31 - 1)]


@pytest.mark.parametrize(("text", "seconds"), TTLS)
def test_ttl(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "-1", "1h-", "2147483648", "1.5h"])
def test_bad_ttl(text: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(text)}$"):
        parse_ttl(text)


LABELS = [
    ("www.example.org.", ([b"www", b"example", b"org"], True)),
    ("www", ([b"www"], False)),
    (".", ([], True)),
    ("a\\.b.c", ([b"a.b", b"c"], False)),
    ("\\032x\\\\.", ([b" x\\"], True)),
]


@pytest.mark.parametrize(("text", "expected"), LABELS)
def test_split_labels(text: str, expected: tuple[list[bytes], bool]) -> None:
    assert split_labels(text) == expected
