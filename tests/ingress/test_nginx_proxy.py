"""The BackendTLS and Proxy feature groups through real nginx: HTTPS backends whose certificate
is and is not trusted, one asking nginx for a client certificate, and the proxy-* annotations
as a user checks them (the header the backend receives, the Location and cookies nginx
rewrites, retries around a dead endpoint)."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
from pathlib import Path

from kubewatch import Store
from tests.ingress import objects as o
from tests.ingress.conftest import services
from tests.ingress.objects import ann
from tests.ingress.tlsutil import Authority


def secret(name: str, data: dict[str, bytes]) -> o.Obj:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": "default"},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}  # fmt: skip


_VERIFY = {"proxy_ssl_verify": "on", "proxy_ssl_name": "backend.local"}
# (case, Service, annotations, status): what curl through nginx answers.
BACKEND_TLS_CASES: list[tuple[str, str, dict[str, str], int]] = [
    ("trusted", "trusted", {"proxy_ssl_secret": "ca", **_VERIFY}, 200),
    ("trusted-sni", "trusted", {"proxy_ssl_secret": "ca", "proxy_ssl_server_name": "on", **_VERIFY}, 200),
    ("untrusted", "untrusted", {"proxy_ssl_secret": "ca", **_VERIFY}, 502),
    ("untrusted-verify-off", "untrusted", {"proxy_ssl_secret": "ca", "proxy_ssl_verify": "off"}, 200),
    ("wrong-name", "trusted", {"proxy_ssl_secret": "ca", "proxy_ssl_verify": "on"}, 502),
    ("tls13-only", "trusted", {"proxy_ssl_secret": "ca", "proxy_ssl_protocols": "TLSv1.3", **_VERIFY}, 200),
    ("ciphers", "trusted", {"proxy_ssl_secret": "ca", "proxy_ssl_protocols": "TLSv1.2",
                            "proxy_ssl_ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256", **_VERIFY}, 200),
    ("depth-2", "trusted", {"proxy_ssl_secret": "ca", "proxy_ssl_verify_depth": "2", **_VERIFY}, 200),
    ("client-cert", "mutual", {"proxy_ssl_secret": "ca-client", **_VERIFY}, 200),
    ("no-client-cert", "mutual", {"proxy_ssl_secret": "ca", **_VERIFY}, 502),
    ("missing-secret", "trusted", {"proxy_ssl_secret": "nosuch", **_VERIFY}, 503),
    ("secret-without-ca", "trusted", {"proxy_ssl_secret": "noca", **_VERIFY}, 503),
    ("key-not-of-cert", "trusted", {"proxy_ssl_secret": "mismatch", **_VERIFY}, 503),
    ("other-namespace", "trusted", {"proxy_ssl_secret": "kube-system/ca", **_VERIFY}, 503),
]  # fmt: skip


async def test_backend_tls(start_controller, backends, client_for, authority: Authority, tmp_path: Path) -> None:
    stranger = Authority.create("someone else's CA")
    (tmp_path / "stranger").mkdir()
    names: list[str] = []
    trusted = authority.server_context(tmp_path, "backend.local")
    trusted.sni_callback = lambda _sock, name, _ctx: names.append(name or "")  # type: ignore[assignment,misc]
    mutual = authority.server_context(tmp_path, "backend.local")
    mutual.verify_mode = ssl.CERT_REQUIRED
    mutual.load_verify_locations(cadata=authority.pem.decode())
    contexts = {"trusted": trusted, "untrusted": stranger.server_context(tmp_path / "stranger", "backend.local"),
                "mutual": mutual}  # fmt: skip
    store = Store()
    o.put(store, o.ingress_class())
    for svc, context in contexts.items():
        addrs, port = await backends.start(svc, tls=context)
        o.put(store, o.service(svc, ("https", 443, "https")), o.endpoint_slice(svc, addrs, port, port_name="https"))
    client_crt, client_key = authority.issue("nginx-client")
    _, other_key = authority.issue("other")
    o.put(store, secret("ca", {"ca.crt": authority.pem}),
          secret("ca-client", {"ca.crt": authority.pem, "tls.crt": client_crt, "tls.key": client_key}),
          secret("noca", {"tls.crt": client_crt, "tls.key": client_key}),
          secret("mismatch", {"ca.crt": authority.pem, "tls.crt": client_crt, "tls.key": other_key}))  # fmt: skip
    for i, (_, svc, extra, _) in enumerate(BACKEND_TLS_CASES):
        o.put(store, o.ingress(f"btls-{i}", o.rule(f"btls{i}.test", o.path("/", svc, port=443)),
                               annotations=ann(backend_protocol="HTTPS", **extra)))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    for i, (case, svc, _, status) in enumerate(BACKEND_TLS_CASES):
        names.clear()
        reply = await client.request(f"btls{i}.test", "/x")
        assert reply.status == status, case
        if status == 200:
            assert reply.backend == svc, case
        if case == "trusted-sni":
            assert names == ["backend.local"]
        elif case == "trusted":
            assert "backend.local" not in names  # proxy-ssl-server-name off: no SNI
    # The CA and the client pair nginx's master reads: ours, 0600, nothing but the certificates and key.
    files = sorted((controller.layout.root / "auth").iterdir())
    assert {f.suffix for f in files} == {".pem"}
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)


# (case, annotations, path, check): a header the backend received, or one nginx answered with.
PROXY_CASES: list[tuple[str, dict[str, str], str, dict[str, str]]] = [
    ("x-forwarded-prefix", {"x_forwarded_prefix": "/api"}, "/", {"seen:X-Forwarded-Prefix": "/api"}),
    ("connection", {"connection_proxy_header": "keep-alive"}, "/", {"seen:Connection": "keep-alive"}),
    ("http-1.0", {"proxy_http_version": "1.0"}, "/", {"version": "1.0"}),
    ("http-1.1", {"proxy_http_version": "1.1"}, "/", {"version": "1.1"}),
    ("redirect", {"proxy_redirect_from": "http://internal.local/", "proxy_redirect_to": "https://public.example/app/"},
     "/answer?status=302&Location=http://internal.local/x", {"Location": "https://public.example/app/x"}),
    ("redirect-off", {"proxy_redirect_from": "off"},
     "/answer?status=302&Location=http://internal.local/x", {"Location": "http://internal.local/x"}),
    ("cookie-domain", {"proxy_cookie_domain": "internal.local public.example"},
     "/answer?Set-Cookie=a%3D1%3B%20Domain%3Dinternal.local", {"Set-Cookie": "a=1; Domain=public.example"}),
    ("cookie-path", {"proxy_cookie_path": "/old/ /new/"},
     "/answer?Set-Cookie=a%3D1%3B%20Path%3D/old/x", {"Set-Cookie": "a=1; Path=/new/x"}),
    ("buffers", {"proxy_buffer_size": "16k", "proxy_buffers_number": "8", "proxy_max_temp_file_size": "1m",
                 "client_body_buffer_size": "64k", "proxy_request_buffering": "off"}, "/", {"version": "1.1"}),
]  # fmt: skip


async def test_proxy_annotations(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, web=("web",))
    for i, (_, extra, _, _) in enumerate(PROXY_CASES):
        o.put(store, o.ingress(f"px-{i}", o.rule(f"px{i}.test", o.path("/", "web")), annotations=ann(**extra)))
    controller = await start_controller(store)
    client = client_for(controller)
    for i, (case, _, path, checks) in enumerate(PROXY_CASES):
        reply = await client.request(f"px{i}.test", path)
        assert reply.status in (200, 302), case
        for key, want in checks.items():
            if key.startswith("seen:"):
                assert reply.data["headers"].get(key[5:]) == want, case
            elif key == "version":
                assert reply.data["version"] == want, case
            else:
                assert reply.headers.get(key) == want, case
    # A body larger than client-body-buffer-size reaches the backend whole, unbuffered.
    buffered = next(i for i, c in enumerate(PROXY_CASES) if c[0] == "buffers")
    big = await client.request(f"px{buffered}.test", "/", method="POST", data=b"x" * 300_000)
    assert (big.status, big.data["body_length"]) == (200, 300_000)


async def test_proxy_next_upstream(start_controller, backends, client_for) -> None:
    """One ready endpoint of two answers nothing: with retries on errors every request gets the
    live one; with proxy-next-upstream off (or one try) some get the dead one's 502."""
    store = Store()
    o.put(store, o.ingress_class())
    addrs, port = await backends.start("live")
    dead = backends.next_addresses(1)  # nobody listens there
    o.put(store, o.service("half", ("http", 80, "http")), o.endpoint_slice("half", [*addrs, *dead], port))
    cases = [("retry", {"proxy_next_upstream": "error timeout http_502", "proxy_next_upstream_tries": "2",
                        "proxy_next_upstream_timeout": "5"}, False),
             ("off", {"proxy_next_upstream": "off"}, True),
             ("one-try", {"proxy_next_upstream_tries": "1"}, True)]  # fmt: skip
    for i, (_, extra, _) in enumerate(cases):
        o.put(store, o.ingress(f"nu-{i}", o.rule(f"nu{i}.test", o.path("/", "half")), annotations=ann(**extra)))
    controller = await start_controller(store)
    client = client_for(controller)
    for i, (case, _, fails) in enumerate(cases):
        statuses = {(await client.request(f"nu{i}.test", "/")).status for _ in range(8)}
        assert statuses == ({200, 502} if fails else {200}), case


# (case, annotations, requests, statuses expected in order): what a client hammering nginx sees.
RATE_CASES: list[tuple[str, dict[str, str], list[int]]] = [
    ("rpm", {"limit_rpm": "2", "limit_burst_multiplier": "1"}, [200, 200, 200, 503, 503]),
    ("rpm-allowlisted", {"limit_rpm": "2", "limit_burst_multiplier": "1", "limit_allowlist": "127.0.0.0/8"},
     [200] * 5),
    ("rps-whitelisted", {"limit_rps": "1", "limit_burst_multiplier": "1", "limit_whitelist": "10.0.0.0/8, 127.0.0.1"},
     [200] * 5),
    ("rps-not-listed", {"limit_rps": "1", "limit_burst_multiplier": "1", "limit_allowlist": "10.0.0.0/8"},
     [200, 200, 503, 503, 503]),
]  # fmt: skip


async def test_rate_limits(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, web=("web",))
    for i, (_, extra, _) in enumerate(RATE_CASES):
        o.put(store, o.ingress(f"rl-{i}", o.rule(f"rl{i}.test", o.path("/", "web")), annotations=ann(**extra)))
    controller = await start_controller(store)
    client = client_for(controller)
    for i, (case, _, want) in enumerate(RATE_CASES):
        got = [(await client.request(f"rl{i}.test", "/")).status for _ in want]
        assert got == want, case


async def test_limit_rate_and_temporal_redirect_code(start_controller, backends, client_for) -> None:
    """limit-rate slows a response down to its KB/s after limit-rate-after KB; the backend echoes
    an 8 KB header back, so at 2 KB/s the answer takes about 3 s, and with 64 KB free it does not.
    As in ingress-nginx, it takes proxy-buffering on (unbuffered answers are not limited)."""
    store = Store()
    await services(backends, store, web=("web",))
    o.put(store, o.ingress("slow", o.rule("slow.test", o.path("/", "web")),
                           annotations=ann(limit_rate="2", proxy_buffering="on")),
          o.ingress("free", o.rule("free.test", o.path("/", "web")),
                    annotations=ann(limit_rate="2", limit_rate_after="64", proxy_buffering="on")),
          o.ingress("moved", o.rule("moved.test", o.path("/", "web")),
                    annotations=ann(temporal_redirect="https://new.example/", temporal_redirect_code="307")),
          )  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    loop = asyncio.get_running_loop()
    # (incompressible, and asked for as is: nginx's gzip would shrink it below the free first second)
    pad = {"X-Pad": base64.b64encode(os.urandom(6000)).decode(), "Accept-Encoding": "identity"}
    for host, slow in (("slow.test", True), ("free.test", False)):
        start = loop.time()
        reply = await client.request(host, "/", headers=pad)
        took = loop.time() - start
        assert reply.status == 200
        assert took > 2 if slow else took < 1.5, (host, took)
    moved = await client.request("moved.test", "/x")
    assert (moved.status, moved.headers["Location"]) == (307, "https://new.example/")
