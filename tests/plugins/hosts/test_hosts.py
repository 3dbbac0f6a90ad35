"""hosts: the parse table, the answer table (file + inline, wildcards, PTR, NODATA, fallthrough), reload."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path

import pytest

from corefile import CorefileError, parse
from dnsplugins import hosts as hostsplugin
from dnsplugins.hosts import Hosts, HostsConfig
from dnsserver.config import build
from dnsserver.metrics import REGISTRY
from dnsserver.plugin import Fallthrough
from tests.dnstest import Case, Served, plugin_in, serve


def hosts_of(text: str, filename: str = "Corefile") -> Hosts:
    return plugin_in(Hosts, text, filename)


def fall(*zones: str) -> Fallthrough:
    f = Fallthrough()
    f.enabled, f.zones = True, list(zones)
    return f


def config_tuple(c: HostsConfig) -> tuple[object, ...]:
    return (c.path, c.zones, c.ttl, c.reverse, c.reload, c.fall.enabled, c.fall.zones, c.fall_unsupported,
            c.inline)


# (Corefile, expected HostsConfig); FILE in the text is replaced by a path that exists.
PARSE_CASES = [
    (". {\n hosts\n}", HostsConfig()),
    ("example.org {\n hosts\n}", HostsConfig(zones=["example.org."])),
    (". {\n hosts FILE\n}", HostsConfig(path="FILE")),
    (". {\n hosts FILE Example.ORG 10.0.0.0/24\n}",
     HostsConfig(path="FILE", zones=["example.org.", "0.0.10.in-addr.arpa."])),
    (". {\n hosts {\n  ttl 60\n  reload 1m\n  no_reverse\n }\n}",
     HostsConfig(ttl=60, reload=60.0, reverse=False)),
    (". {\n hosts {\n  reload 0\n  ttl 65535\n }\n}", HostsConfig(reload=0.0, ttl=65535)),
    (". {\n hosts {\n  10.0.0.1 a.example.org b\n  fd00::1 c\n  fallthrough\n }\n}",
     HostsConfig(inline=["10.0.0.1 a.example.org b", "fd00::1 c"], fall=fall("."))),
    (". {\n hosts {\n  fallthrough example.org in-addr.arpa\n  fallthrough_unsupported\n }\n}",
     HostsConfig(fall=fall("example.org.", "in-addr.arpa."), fall_unsupported=True)),
]


@pytest.mark.parametrize(("corefile", "want"), PARSE_CASES)
def test_parse(corefile: str, want: HostsConfig, tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("")
    if want.path == "FILE":
        want.path = str(path)
    got = hosts_of(corefile.replace("FILE", str(path))).config
    assert config_tuple(got) == config_tuple(want)


def test_relative_path_is_taken_from_the_corefile_directory(tmp_path: Path) -> None:
    (tmp_path / "my.hosts").write_text("10.0.0.1 a.example.org\n")
    got = hosts_of(". {\n hosts my.hosts\n}", str(tmp_path / "Corefile")).config
    assert got.path == str(tmp_path / "my.hosts")


H2, H3 = "Corefile:2 - plugin/hosts: ", "Corefile:3 - plugin/hosts: "
PARSE_ERRORS = [
    (". {\n hosts {\n  ttl\n }\n}", H3 + "ttl needs a time in second"),
    (". {\n hosts {\n  ttl 5m\n }\n}", H3 + "ttl needs a number of second"),
    (". {\n hosts {\n  ttl 0\n }\n}", H3 + "ttl provided is invalid"),
    (". {\n hosts {\n  ttl 65536\n }\n}", H3 + "ttl provided is invalid"),
    (". {\n hosts {\n  reload\n }\n}", H3 + "reload needs a duration (zero seconds to disable)"),
    (". {\n hosts {\n  reload 1s 2s\n }\n}", H3 + "reload needs a duration (zero seconds to disable)"),
    (". {\n hosts {\n  reload 5x\n }\n}", H3 + "invalid duration for reload '5x'"),
    (". {\n hosts {\n  reload -5s\n }\n}", H3 + "invalid duration for reload '-5s'"),
    (". {\n hosts {\n  no_reverse please\n }\n}",
     H3 + "Wrong argument count or unexpected line ending after 'please'"),
    # Inline entries must come before fallthrough: after it, a line is an unknown property.
    (". {\n hosts {\n  fallthrough\n  10.0.0.1 a.example.org\n }\n}",
     "Corefile:4 - plugin/hosts: unknown property '10.0.0.1'"),
    (". {\n hosts {\n  fallthrough_unsupported\n }\n}", H3 + "fallthrough_unsupported requires fallthrough"),
    (". {\n hosts\n hosts\n}", H3 + "this plugin can only be used once per Server Block"),
]


@pytest.mark.parametrize(("corefile", "message"), PARSE_ERRORS)
def test_parse_errors(corefile: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        hosts_of(corefile)
    assert str(e.value) == message


def test_missing_file_is_only_a_warning(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.WARNING, logger="portolan")
    h = hosts_of(f". {{\n hosts {tmp_path / 'nope'}\n}}")
    assert h.config.path == str(tmp_path / "nope")
    assert f"[WARNING] plugin/hosts: File does not exist: {tmp_path / 'nope'}" in caplog.messages


def test_inline_line_that_is_not_an_entry_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="portolan")
    hosts_of(". {\n hosts {\n  fallthru\n }\n}")
    assert any("ignoring inline entry 'fallthru'" in m for m in caplog.messages)


def test_names_no_record_can_hold_are_skipped() -> None:
    """fuzz/corpus/hosts/crash-empty-label: an empty label made the Index raise, and the plugin's start with it."""
    parsed = hostsplugin.parse_hosts("10.0.0.1 a..b.example.org ok.example.org " + "x" * 64 + ".example.org\n",
                                     ["."], True)
    index = hostsplugin.Index([parsed], 3600)
    assert list(parsed.v4) == ["ok.example.org."]
    assert index.lookup("ok.example.org.") is not None


HOSTS_FILE = """\
# a comment line
127.0.0.1 localhost localhost.domain
::1 localhost
10.0.0.1 example.org www.example.org   # trailing comment
10.0.0.1 example.org
::FFFF:10.0.0.2 example.com
fd00::5 v6.example.org
fe80::1%eth0 linklocal.example.org
10.0.0.3 Mixed.Case.Example.ORG.
10.0.0.4 other.net
5.6.7.8 *.apps.example.com
fd00::8 *.apps.example.com
9.9.9.9 special.apps.example.com
not-an-ip bogus.example.org
10.0.0.9
"""

INLINE = """\
        10.0.0.11 example.org
        10.0.0.1 www.example.org
"""


def corefile(path: Path, zones: str = "example.org example.com", options: str = "") -> str:
    return (f". {{\n    hosts {path} {zones} {{\n{INLINE}{options}    }}\n    whoami\n}}\n")


def passed_on(name: str, qtype: str = "A") -> Case:
    """What the query gets from whoami, the plugin after hosts: proof it was passed on."""
    return Case(name, qtype, extra=[f"{name} 0 IN A 10.240.0.1", f"_udp.{name} 0 IN SRV 0 0 40212 ."])


ORG = "example.org."
ANSWERS = [
    # The file's and the inline addresses together; a repeated address once.
    Case(ORG, answer=[f"{ORG} 3600 IN A 10.0.0.1", f"{ORG} 3600 IN A 10.0.0.11"], aa=True),
    Case("EXAMPLE.Org.", answer=[f"{ORG} 3600 IN A 10.0.0.1", f"{ORG} 3600 IN A 10.0.0.11"], aa=True),
    Case("www.example.org.", answer=["www.example.org. 3600 IN A 10.0.0.1"], aa=True),
    Case("mixed.case.example.org.", answer=["mixed.case.example.org. 3600 IN A 10.0.0.3"]),
    # A name with entries but not of this type: NODATA, no SOA, authoritative.
    Case(ORG, "AAAA", aa=True),
    Case(ORG, "MX", aa=True),
    Case(ORG, "TXT", aa=True),
    Case("v6.example.org.", "AAAA", answer=["v6.example.org. 3600 IN AAAA fd00::5"]),
    Case("v6.example.org.", "A", aa=True),
    Case("linklocal.example.org.", "AAAA", answer=["linklocal.example.org. 3600 IN AAAA fe80::1"]),
    # ::ffff:10.0.0.2 is an IPv4 address.
    Case("example.com.", answer=["example.com. 3600 IN A 10.0.0.2"]),
    Case("example.com.", "AAAA"),
    # Unknown names in the zones: SERVFAIL (no fallthrough here).
    Case("nope.example.org.", rcode="SERVFAIL", aa=False),
    Case("bogus.example.org.", rcode="SERVFAIL"),
    Case("nope.example.org.", "MX", rcode="SERVFAIL"),
    # Outside the zones: passed on, even when the file lists the name.
    passed_on("localhost."),
    passed_on("other.net."),
    # Wildcards: exactly one label, never the apex, exact names win, no PTR.
    Case("web.apps.example.com.", answer=["web.apps.example.com. 3600 IN A 5.6.7.8"], aa=True),
    Case("WEB.apps.example.com.", "AAAA", answer=["web.apps.example.com. 3600 IN AAAA fd00::8"]),
    Case("web.apps.example.com.", "TXT", aa=True),
    Case("apps.example.com.", rcode="SERVFAIL"),
    Case("a.web.apps.example.com.", rcode="SERVFAIL"),
    Case("special.apps.example.com.", answer=["special.apps.example.com. 3600 IN A 9.9.9.9"]),
    Case("special.apps.example.com.", "AAAA"),
    passed_on("8.7.6.5.in-addr.arpa.", "PTR"),
    # PTR: made from the file and the inline entries, answered although in-addr.arpa is not a zone.
    Case("1.0.0.10.in-addr.arpa.", "PTR", aa=True,
         answer=["1.0.0.10.in-addr.arpa. 3600 IN PTR example.org.",
                 "1.0.0.10.in-addr.arpa. 3600 IN PTR www.example.org."]),
    Case("11.0.0.10.in-addr.arpa.", "PTR", answer=["11.0.0.10.in-addr.arpa. 3600 IN PTR example.org."]),
    Case("2.0.0.10.in-addr.arpa.", "PTR", answer=["2.0.0.10.in-addr.arpa. 3600 IN PTR example.com."]),
    Case("5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", "PTR",
         answer=["5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 3600 IN PTR "
                 "v6.example.org."]),
    # No entry for the address (or it was outside the zones): passed on, whatever fallthrough says.
    passed_on("4.0.0.10.in-addr.arpa.", "PTR"),
    passed_on("1.0.0.127.in-addr.arpa.", "PTR"),
    passed_on("9.9.9.10.in-addr.arpa.", "PTR"),
    # A PTR query for a forward name is not a reverse look-up: passed on.
    passed_on(ORG, "PTR"),
]


@pytest.fixture
def hosts_file(tmp_path: Path) -> Path:
    path = tmp_path / "hosts"
    path.write_text(HOSTS_FILE)
    return path


async def test_answers(hosts_file: Path) -> None:
    async with serve(corefile(hosts_file)) as s:
        await s.run(ANSWERS)


OPTION_CASES = [
    ("ttl", "        ttl 60\n",
     [Case(ORG, answer=[f"{ORG} 60 IN A 10.0.0.1", f"{ORG} 60 IN A 10.0.0.11"]),
      Case("web.apps.example.com.", answer=["web.apps.example.com. 60 IN A 5.6.7.8"]),
      Case("11.0.0.10.in-addr.arpa.", "PTR", answer=["11.0.0.10.in-addr.arpa. 60 IN PTR example.org."])]),
    ("no_reverse", "        no_reverse\n", [passed_on("1.0.0.10.in-addr.arpa.", "PTR"),
                                            passed_on("11.0.0.10.in-addr.arpa.", "PTR"),
                                            Case(ORG, answer=[f"{ORG} 3600 IN A 10.0.0.1",
                                                              f"{ORG} 3600 IN A 10.0.0.11"])]),
    ("fallthrough", "        fallthrough\n",
     [passed_on("nope.example.org."), passed_on("nope.example.org.", "MX"), passed_on("apps.example.com."),
      Case(ORG, "MX", aa=True)]),  # NODATA never falls through
    ("fallthrough for some zones", "        fallthrough example.com\n",
     [passed_on("nope.example.com."), Case("nope.example.org.", rcode="SERVFAIL")]),
    ("fallthrough_unsupported", "        fallthrough\n        fallthrough_unsupported\n",
     [passed_on(ORG, "MX"), passed_on(ORG, "TXT"), Case(ORG, "AAAA", aa=True),
      Case(ORG, answer=[f"{ORG} 3600 IN A 10.0.0.1", f"{ORG} 3600 IN A 10.0.0.11"])]),
    ("fallthrough_unsupported keeps to the fallthrough zones",
     "        fallthrough example.com\n        fallthrough_unsupported\n",
     [Case(ORG, "MX", aa=True), passed_on("example.com.", "MX")]),
]


@pytest.mark.parametrize(("name", "options", "cases"), OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
async def test_options(name: str, options: str, cases: list[Case], hosts_file: Path) -> None:
    async with serve(corefile(hosts_file, options=options)) as s:
        await s.run(cases)


async def test_block_zones_are_the_default(hosts_file: Path) -> None:
    text = f"example.org {{\n    hosts {hosts_file}\n    whoami\n}}\n"
    async with serve(text) as s:
        await s.run([Case(ORG, answer=[f"{ORG} 3600 IN A 10.0.0.1"]),
                     Case("1.0.0.10.in-addr.arpa.", "PTR", rcode="REFUSED")])  # no block for it
    # The example.com entries were dropped when the file was read: no PTR for 10.0.0.2.
    text = f". {{\n    hosts {hosts_file} example.org\n    whoami\n}}\n"
    async with serve(text) as s:
        await s.run([passed_on("2.0.0.10.in-addr.arpa.", "PTR"), passed_on("example.com.")])


async def test_inline_only(tmp_path: Path) -> None:
    text = ". {\n hosts " + str(tmp_path / "missing") + " {\n  192.0.2.1 a.example.org\n }\n}"
    async with serve(text) as s:
        await s.run([Case("a.example.org.", answer=["a.example.org. 3600 IN A 192.0.2.1"]),
                     Case("1.2.0.192.in-addr.arpa.", "PTR",
                          answer=["1.2.0.192.in-addr.arpa. 3600 IN PTR a.example.org."])])


def hosts_in(s: Served) -> Hosts:
    return next(p for p in s.config.plugins if isinstance(p, Hosts))


def touch_later(path: Path, text: str) -> None:
    """Rewrite `path` so that its mtime surely differs from the last read (size may not)."""
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


async def test_reread_on_change(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("10.0.0.1 a.example.org\n")
    async with serve(f". {{\n hosts {path} {{\n  reload 0\n  10.9.9.9 inline.example.org\n }}\n}}") as s:
        h = hosts_in(s)
        assert h._periodic.task is None  # reload 0: no background checks
        await s.run([Case("a.example.org.", answer=["a.example.org. 3600 IN A 10.0.0.1"])])
        assert h.read_hosts() is False  # unchanged: not parsed again
        touch_later(path, "10.0.0.2 a.example.org\n10.0.0.3 b.example.org\n")
        assert h.read_hosts() is True
        await s.run([Case("a.example.org.", answer=["a.example.org. 3600 IN A 10.0.0.2"]),
                     Case("b.example.org.", answer=["b.example.org. 3600 IN A 10.0.0.3"]),
                     Case("inline.example.org.", answer=["inline.example.org. 3600 IN A 10.9.9.9"])])
        # Same size, newer mtime: still noticed.
        touch_later(path, "10.0.0.4 a.example.org\n10.0.0.5 b.example.org\n")
        assert h.read_hosts() is True
        await s.run([Case("a.example.org.", answer=["a.example.org. 3600 IN A 10.0.0.4"])])
        # The file disappears: what was read from it is kept, inline entries too.
        path.unlink()
        assert h.read_hosts() is False
        await s.run([Case("a.example.org.", answer=["a.example.org. 3600 IN A 10.0.0.4"]),
                     Case("inline.example.org.", answer=["inline.example.org. 3600 IN A 10.9.9.9"])])
        path.write_text("10.0.0.6 a.example.org\n")
        assert h.read_hosts() is True
        await s.run([Case("a.example.org.", answer=["a.example.org. 3600 IN A 10.0.0.6"])])


async def test_file_created_after_start(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    async with serve(f". {{\n hosts {path} {{\n  reload 0\n }}\n}}") as s:
        await s.run([Case("a.example.org.", rcode="SERVFAIL")])
        path.write_text("10.0.0.1 a.example.org\n")
        assert hosts_in(s).read_hosts() is True
        await s.run([Case("a.example.org.", answer=["a.example.org. 3600 IN A 10.0.0.1"])])


async def test_background_reload(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("10.0.0.1 a.example.org\n")
    async with serve(f". {{\n hosts {path} {{\n  reload 10ms\n }}\n}}") as s:
        h = hosts_in(s)
        assert h.reload_interval == 0.01
        assert h._periodic.task is not None
        touch_later(path, "10.0.0.22 a.example.org\n")
        for _ in range(200):
            reply = await s.query(Case("a.example.org."))
            if reply.rr and str(reply.rr[0].rdata) == "10.0.0.22":
                break
            await asyncio.sleep(0.01)
        await s.run([Case("a.example.org.", answer=["a.example.org. 3600 IN A 10.0.0.22"])])
        task = h._periodic.task
    assert h._periodic.task is None
    assert task.done()


async def test_metrics(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("10.0.0.1 a.example.org b.example.org\nfd00::1 a.example.org\n")
    async with serve(f". {{\n hosts {path} {{\n  10.0.0.2 c.example.org\n }}\n}}"):
        # 3 forward addresses + 3 reverse names from the file, 1 + 1 inline.
        assert REGISTRY.get_sample_value("coredns_hosts_entries") == 8
        assert REGISTRY.get_sample_value("coredns_hosts_reload_timestamp_seconds") == \
            pytest.approx(path.stat().st_mtime_ns / 1e9)


def test_docstring_examples_build() -> None:
    blocks = re.findall(r"```corefile\n(.*?)```", hostsplugin.__doc__ or "", re.S)
    assert blocks
    for text in blocks:
        build(parse(text, "Corefile"), 53)
