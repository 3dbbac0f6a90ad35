"""TCP/UDP services ConfigMap entries: parsing (table) and the stream servers built from them."""

from __future__ import annotations

import pytest

from ingress.l4 import TCP, UDP, StreamService, build_streams, parse_entry
from ingress.validate import InvalidValue
from tests.ingress import objects as o
from tests.ingress.modelkit import store_of

NONE: frozenset[int] = frozenset()


@pytest.mark.parametrize(
    ("protocol", "key", "value", "expected"),
    [
        (TCP, "9000", "default/example-go:8080", StreamService(TCP, 9000, "default", "example-go", 8080)),
        (TCP, "5432", "db/postgres:sql", StreamService(TCP, 5432, "db", "postgres", "sql")),
        (TCP, "2222", "a/b:22:PROXY", StreamService(TCP, 2222, "a", "b", 22, accept_proxy=True)),
        (TCP, "2223", "a/b:22::PROXY", StreamService(TCP, 2223, "a", "b", 22, send_proxy=True)),
        (TCP, "2224", "a/b:22:PROXY:PROXY", StreamService(TCP, 2224, "a", "b", 22, True, True)),
        (UDP, "53", "kube-system/kube-dns:53", StreamService(UDP, 53, "kube-system", "kube-dns", 53)),
    ],
)
def test_entries(protocol: str, key: str, value: str, expected: StreamService) -> None:
    assert parse_entry(protocol, key, value, NONE) == expected


@pytest.mark.parametrize(
    ("protocol", "key", "value"),
    [
        (TCP, "x", "a/b:1"), (TCP, "0", "a/b:1"), (TCP, "70000", "a/b:1"), (TCP, "443", "a/b:1"),
        (TCP, "10254", "a/b:1"), (TCP, "9000", "b:1"), (TCP, "9000", "a/b"), (TCP, "9000", "a/b:0"),
        (TCP, "9000", "a/b:1:PROXY:PROXY:x"), (TCP, "9000", "a/b:1:SEND"), (TCP, "9000", "a/B:1"),
        (TCP, "9000", "a/b:1;listen 1"), (TCP, "9000", "a/b:1\nx"), (TCP, "9000", "a/b c:1"),
        (TCP, "9000", "a/b:-http-"), (UDP, "53", "a/b:53:PROXY"), (TCP, "9000", "a/b:1:PROXY;"),
    ],
)  # fmt: skip
def test_refused_entries(protocol: str, key: str, value: str) -> None:
    with pytest.raises(InvalidValue):
        parse_entry(protocol, key, value, frozenset({443, 10254}))


def test_streams_from_services_and_endpoints() -> None:
    store = store_of(
        o.service("echo", ("tcp", 5000, 5000)),
        o.endpoint_slice("echo", ["10.0.0.2", "10.0.0.1"], 5000, port_name="tcp", not_ready=("10.0.0.9",)),
        o.service("dns", ("dns", 53, 53), protocol="UDP"),
        o.endpoint_slice("dns", ["10.0.0.5"], 5353, port_name="dns", protocol="UDP"),
        o.service("empty", ("tcp", 1, 1)),
    )
    streams, notes = build_streams(
        store,
        {"9000": "default/echo:5000", "9001": "default/empty:1", "9002": "default/missing:1", "9003": "default/dns:53",
         "80": "default/echo:5000"},
        {"5353": "default/dns:dns", "5354": "default/echo:5000"},
        reserved=(8080,),
    )  # fmt: skip
    # A service without ready endpoints keeps its listener (its peers are live data).
    assert [(s.key, s.endpoints) for s in streams] == [
        ("tcp-9000", (("10.0.0.1", 5000), ("10.0.0.2", 5000))),
        ("tcp-9001", ()),
        ("udp-5353", (("10.0.0.5", 5353),)),
    ]
    assert len(notes) == 5
    assert sum("skipped" in n for n in notes) == 4
    assert sum("closed until one is" in n for n in notes) == 1
    assert any("has no TCP port 53" in n for n in notes)
    assert any("has no UDP port 5000" in n for n in notes)


@pytest.mark.parametrize(
    ("maps", "expected"),
    [
        # Every namespace (Ingresses name ConfigMaps too: auth-proxy-set-headers) ...
        ({"configmap": ("ing", "cfg")}, ((), "")),
        ({}, ((), "")),
        # ... or the watched one and the named ones'.
        ({"watch_namespace": "apps", "configmap": ("ing", "cfg")}, (("apps", "ing"), "")),
        ({"watch_namespace": "apps", "configmap": ("ing", "cfg"), "tcp_services_configmap": ("ing", "tcp"),
          "udp_services_configmap": ("other", "udp")}, (("apps", "ing", "other"), "")),
    ],
)  # fmt: skip
def test_config_maps_watched(tmp_path, maps: dict[str, object], expected: tuple[tuple[str, ...], str]) -> None:
    from ingress.controller import Controller
    from tests.ingress.conftest import make_options

    specs = Controller(make_options(tmp_path, **maps)).watch_specs()
    found = [(s.namespaces, s.field_selector) for s in specs if s.kind == "configmaps"]
    assert found == [expected]


def test_stream_peers_files(tmp_path) -> None:
    from ingress.l4 import StreamServer, StreamService
    from ingress.layout import Layout
    from ingress.streampeers import StreamPeers

    layout = Layout.at(tmp_path)
    layout.prepare()
    (layout.l4 / "tcp-1").write_text("10.9.9.9:1")  # a previous run's: removed at the first write
    echo = StreamService("TCP", 9000, "default", "echo", 5000)
    peers = StreamPeers(layout)
    assert peers.write([StreamServer(echo, (("10.0.0.1", 5000), ("fd00::1", 5000)))]) == 2
    assert sorted(p.name for p in layout.l4.iterdir()) == ["tcp-9000"]
    assert (layout.l4 / "tcp-9000").read_text() == "10.0.0.1:5000 [fd00::1]:5000"
    assert (layout.l4 / "tcp-9000").stat().st_mode & 0o777 == 0o644  # nginx's workers read it
    assert peers.write([StreamServer(echo, (("10.0.0.1", 5000), ("fd00::1", 5000)))]) == 0  # unchanged
    assert peers.write([StreamServer(echo, ())]) == 1
    assert (layout.l4 / "tcp-9000").read_text() == ""
    assert peers.write([]) == 1
    assert list(layout.l4.iterdir()) == []
