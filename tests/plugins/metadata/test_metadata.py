"""metadata: the Request API, kubernetes' name parts, which queries get labels, and log's {/LABEL}."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from dnslib import QTYPE, DNSQuestion, DNSRecord

from corefile import CorefileError, parse
from dnsplugins.kubernetes.metadata import INVALID, NameParts, parse_name
from dnsplugins.metadata import Metadata
from dnsserver.config import build
from dnsserver.request import Request
from tests.dnstest import plugin_in, serve

CLUSTER = Path(__file__).resolve().parents[2] / "data" / "k8s" / "cluster.yaml"


def request(name: str) -> Request:
    msg = DNSRecord(q=DNSQuestion(name, QTYPE.A))
    return Request(msg, msg.pack(), ("10.0.0.1", 5353), "udp", "127.0.0.1", "dns://:53")


def test_request_api() -> None:
    req = request("a.example.")
    calls: list[int] = []

    def later() -> str:
        calls.append(1)
        return "worked out"

    req.set_meta("test/plain", "v")
    req.set_meta("test/lazy", later)
    assert calls == []  # not worked out until read
    assert req.meta_value("test/lazy") == "worked out"
    assert req.meta_value("test/lazy") == "worked out"
    assert calls == [1]  # and only once
    assert (req.meta_value("test/plain"), req.meta_value("test/absent")) == ("v", "")
    assert req.meta_labels() == ["test/lazy", "test/plain"]
    assert req.clone_for("b.example.").meta_value("test/plain") == "v"  # shared with the exchange's clones
    with pytest.raises(ValueError, match="no slash"):
        req.set_meta("plain", "v")


PARSE = [
    ("cluster.local.", NameParts()),
    ("svc.cluster.local.", NameParts()),
    ("testns.svc.cluster.local.", NameParts("svc", "testns")),
    ("my-svc.testns.svc.cluster.local.", NameParts("svc", "testns", "my-svc")),
    ("my-pod-1.my-svc.testns.svc.cluster.local.", NameParts("svc", "testns", "my-svc", endpoint="my-pod-1")),
    ("_http._tcp.my-svc.testns.svc.cluster.local.", NameParts("svc", "testns", "my-svc", port="http", protocol="tcp")),
    ("10-0-0-1.testns.pod.cluster.local.", NameParts("pod", "testns", "10-0-0-1")),
]


@pytest.mark.parametrize(("name", "want"), PARSE)
def test_parse_name(name: str, want: NameParts) -> None:
    assert parse_name(name, "cluster.local.") == want


@pytest.mark.parametrize("name", ["x.testns.other.cluster.local.", "a.b.c.my-svc.testns.svc.cluster.local."])
def test_parse_name_errors(name: str) -> None:
    with pytest.raises(ValueError, match=INVALID):
        parse_name(name, "cluster.local.")


COREFILE = f"""cluster.local example.org {{
    metadata {{zones}}
    kubernetes cluster.local {{
        manifests {CLUSTER}
    }}
    whoami
}}"""

CASES = [
    # (metadata's zones, query name, labels expected)
    (
        "",
        "_http._tcp.my-svc.testns.svc.cluster.local.",
        {
            "kubernetes/kind": "svc",
            "kubernetes/namespace": "testns",
            "kubernetes/service": "my-svc",
            "kubernetes/endpoint": "",
            "kubernetes/port-name": "http",
            "kubernetes/protocol": "tcp",
        },
    ),
    ("", "x.testns.other.cluster.local.", {"kubernetes/parse-error": INVALID}),
    ("", "www.example.org.", {}),  # metadata's zone, not kubernetes': no provider has anything to say
    ("example.org", "my-svc.testns.svc.cluster.local.", {}),  # not in metadata's zones: nobody is asked
]


@pytest.mark.parametrize(("zones", "name", "want"), CASES)
async def test_providers_are_asked(zones: str, name: str, want: dict[str, str]) -> None:
    seen: dict[str, str] = {}

    async def after(req: Request) -> DNSRecord | None:
        seen.update({label: req.meta_value(label) for label in req.meta_labels()})
        return req.reply()

    async with serve(COREFILE.replace("{zones}", zones)) as s:
        plugin = plugin_in(Metadata, s)
        await plugin.serve(request(name), after)
    assert seen == want


async def test_labels_reach_log_and_the_block_leaves_the_hot_path(caplog: pytest.LogCaptureFixture) -> None:
    corefile = COREFILE.replace("{zones}", "").replace(
        "    whoami\n", '    log . "META {name} {/kubernetes/kind} {/kubernetes/namespace}"\n'
    )
    caplog.set_level(logging.INFO, logger="portolan")
    async with serve(corefile) as s:
        for _ in range(2):
            q = DNSRecord(q=DNSQuestion("my-svc.testns.svc.cluster.local.", QTYPE.A))
            assert await s.wire(q.pack()) is not None
            assert not s.last_fast
    lines = [r.getMessage() for r in caplog.records if "META" in r.getMessage()]
    assert len(lines) == 2
    assert all(line.endswith("META my-svc.testns.svc.cluster.local. svc testns") for line in lines)


M = "Corefile:{} - plugin/metadata: "
PARSE_ERRORS = [
    ("metadata {\n x\n }", M.format(3) + "Wrong argument count"),
    ("metadata\n metadata", M.format(3) + "Wrong argument count"),
]


@pytest.mark.parametrize(("body", "message"), PARSE_ERRORS)
def test_parse_errors(body: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        build(parse(f". {{\n {body}\n whoami\n}}", "Corefile"), 53)
    assert str(e.value).startswith(message)


def test_zones() -> None:
    cfg = build(parse("example.org {\n metadata\n whoami\n}\n. {\n metadata a.example b.example\n whoami\n}"), 53)
    plugins = [next(p for p in b.plugins if isinstance(p, Metadata)) for b in cfg.blocks]
    assert [p.zones for p in plugins] == [["example.org."], ["a.example.", "b.example."]]
