"""ingress-nginx annotations through real nginx: each family with real requests to loopback
backends (and, where behaviour cannot be observed cheaply, the rendered directive)."""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import Any

import aiohttp

from kubewatch import Store
from tests.ingress import objects as o
from tests.ingress.conftest import services
from tests.ingress.objects import A, ann
from tests.ingress.tlsutil import Authority


async def test_rewrite_target_with_capture_groups(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, a=("a1",))
    regex = o.path("/something(/|$)(.*)", "a", path_type="ImplementationSpecific")
    o.put(store, o.ingress("i", o.rule("foo.com", regex), annotations=ann(use_regex="true", rewrite_target="/$2")))
    controller = await start_controller(store)
    client = client_for(controller)
    for sent, seen in [("/something/new/x?q=1", "/new/x?q=1"), ("/something", "/"), ("/SOMETHING/abc", "/abc")]:
        reply = await client.request("foo.com", sent)
        assert (reply.status, reply.data["path"]) == (200, seen), sent
    assert (await client.request("foo.com", "/other")).status == 404


async def test_use_regex_applies_to_every_path_of_the_host(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, a=("a1",), b=("b1",))
    o.put(
        store,
        o.ingress("plain", o.rule("foo.com", o.path("/foo", "a")), created="2024-01-01T00:00:00Z"),
        o.ingress(
            "rx",
            o.rule("foo.com", o.path("/ba[rz]", "b", path_type="ImplementationSpecific")),
            annotations=ann(use_regex="true"),
            created="2024-01-02T00:00:00Z",
        ),
        o.ingress("other", o.rule("bar.com", o.path("/foo", "a"))),
    )
    controller = await start_controller(store)
    client = client_for(controller)
    expected = [
        ("foo.com", "/foo/x", "a1"), ("foo.com", "/FOO", "a1"),  # regex mode: case-insensitive
        ("foo.com", "/fooo", 404), ("foo.com", "/baz", "b1"), ("foo.com", "/BAR/q", "b1"),
        ("bar.com", "/FOO", 404), ("bar.com", "/foo", "a1"),  # other hosts keep plain prefixes
    ]  # fmt: skip
    for host, path, want in expected:
        reply = await client.request(host, path)
        assert (reply.backend or reply.status) == want, (host, path)


async def test_ssl_redirect_and_force_ssl_redirect(start_controller, backends, client_for, authority) -> None:
    store = Store()
    await services(backends, store, a=("a1",))
    crt, key = authority.issue("tls.com", "off.com")
    o.put(
        store,
        o.tls_secret("cert", crt, key),
        o.ingress("tls", o.rule("tls.com", o.path("/", "a")), tls=[{"hosts": ["tls.com"], "secretName": "cert"}]),
        o.ingress(
            "off",
            o.rule("off.com", o.path("/", "a")),
            tls=[{"hosts": ["off.com"], "secretName": "cert"}],
            annotations=ann(ssl_redirect="false"),
        ),
        o.ingress("force", o.rule("force.com", o.path("/", "a")), annotations=ann(force_ssl_redirect="true")),
        o.ingress("plain", o.rule("plain.com", o.path("/", "a"))),
    )
    controller = await start_controller(store)
    client = client_for(controller)
    for host, status in [("tls.com", 308), ("off.com", 200), ("force.com", 308), ("plain.com", 200)]:
        reply = await client.request(host, "/p?x=1")
        assert reply.status == status, host
        if status == 308:
            assert reply.headers["Location"] == f"https://{host}:{controller.options.https_port}/p?x=1"


async def test_backend_protocol(start_controller, backends, client_for, authority: Authority, tmp_path) -> None:
    tls = authority.server_context(tmp_path, "backend.local")
    store = Store()
    o.put(store, o.ingress_class())
    addrs, port = await backends.start("secure1", tls=tls)
    o.put(store, o.service("s", ("https", 443, "https")), o.endpoint_slice("s", addrs, port, port_name="https"))
    await services(backends, store, g=("g1",))
    o.put(
        store,
        o.ingress("https", o.rule("s.com", o.path("/", "s", port=443)), annotations=ann(backend_protocol="HTTPS")),
        o.ingress("grpc", o.rule("g.com", o.path("/", "g")), annotations=ann(backend_protocol="GRPC")),
        o.ingress("grpcs", o.rule("gs.com", o.path("/", "g")), annotations=ann(backend_protocol="grpcs")),
    )
    controller = await start_controller(store)
    reply = await client_for(controller).request("s.com", "/x")
    assert reply.status == 200
    assert reply.backend == "secure1"
    conf = controller.layout.conf.read_text()
    # Both gRPC routes go through the live balancer, each with its scheme.
    assert "grpc_pass grpc://portolan_balancer;" in conf
    assert "grpc_pass grpcs://portolan_balancer;" in conf


async def _capture_first_bytes(address: str, tls: ssl.SSLContext | None) -> tuple[int, asyncio.Future[bytes], Any]:
    """A server that records the first 24 bytes a client sends (and the ALPN it chose)."""
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            data = await reader.readexactly(24)
            ssl_object = writer.get_extra_info("ssl_object")
            alpn = ssl_object.selected_alpn_protocol() if ssl_object else None
            if not got.done():
                got.set_result(data + (f" alpn={alpn}".encode() if alpn else b""))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, address, 0, ssl=tls)
    return server.sockets[0].getsockname()[1], got, server


async def test_grpc_speaks_http2_to_the_backend(start_controller, client_for, authority: Authority, tmp_path) -> None:
    # No gRPC library here: what nginx sends is enough to show the protocol towards the pod
    # (the HTTP/2 connection preface in clear text, or after a TLS handshake choosing h2).
    tls = authority.server_context(tmp_path, "backend.local")
    tls.set_alpn_protocols(["h2"])
    plain_port, plain, s1 = await _capture_first_bytes("127.0.0.60", None)
    tls_port, secure, s2 = await _capture_first_bytes("127.0.0.61", tls)
    try:
        store = Store()
        o.put(store, o.ingress_class())
        stand_ins = [("g", "127.0.0.60", plain_port, "GRPC"), ("gs", "127.0.0.61", tls_port, "GRPCS")]
        for svc, ip, port, protocol in stand_ins:
            o.put(store, o.service(svc, ("grpc", 50051, port)), o.endpoint_slice(svc, [ip], port, port_name="grpc"),
                  o.ingress(svc, o.rule(f"{svc}.com", o.path("/", svc, port=50051)),
                            annotations=ann(backend_protocol=protocol)))  # fmt: skip
        controller = await start_controller(store)
        client = client_for(controller)
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        for host, got, expected in [("g.com", plain, preface), ("gs.com", secure, preface + b" alpn=h2")]:
            reply = await client.request(host, "/helloworld.Greeter/SayHello", method="POST")
            assert reply.status == 502  # the stand-in hangs up after the preface
            assert await asyncio.wait_for(got, 5) == expected, host
    finally:
        s1.close()
        s2.close()


async def test_body_size_timeouts_buffering(start_controller, backends) -> None:
    store = Store()
    await services(backends, store, a=("a1",))
    o.put(store, o.ingress("small", o.rule("foo.com", o.path("/small", "a")), annotations=ann(
              proxy_body_size="1k", proxy_connect_timeout="3", proxy_read_timeout="120s", proxy_send_timeout="30",
              proxy_buffering="on")),
          o.ingress("big", o.rule("foo.com", o.path("/big", "a"))))  # fmt: skip
    controller = await start_controller(store)
    url = f"http://127.0.0.1:{controller.options.http_port}"
    async with aiohttp.ClientSession() as session:
        for path, size, status in [("/small", 2048, 413), ("/small", 512, 200), ("/big", 100_000, 200)]:
            async with session.post(url + path, data=b"x" * size, headers={"Host": "foo.com"}) as resp:
                assert resp.status == status, (path, size)
    conf = controller.layout.conf.read_text()
    for line in ("client_max_body_size 1k;", "proxy_connect_timeout 3s;", "proxy_read_timeout 120s;",
                 "proxy_send_timeout 30s;", "proxy_buffering on;"):  # fmt: skip
        assert line in conf


async def test_read_timeout(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, a=("a1",))
    o.put(store, o.ingress("quick", o.rule("quick.com", o.path("/", "a")), annotations=ann(proxy_read_timeout="1")),
          o.ingress("patient", o.rule("patient.com", o.path("/", "a"))))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    assert (await client.request("quick.com", "/sleep/0.1")).backend == "a1"
    assert (await client.request("quick.com", "/sleep/2.5")).status == 504
    assert (await client.request("patient.com", "/sleep/1.5")).backend == "a1"


async def test_source_ranges(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, a=("a1",))
    o.put(
        store,
        o.ingress("in", o.rule("in.com", o.path("/", "a")),
                  annotations=ann(whitelist_source_range="127.0.0.1/32, 10.0.0.0/8")),
        o.ingress("out", o.rule("out.com", o.path("/", "a")), annotations=ann(allowlist_source_range="10.0.0.0/8")),
        o.ingress("deny", o.rule("deny.com", o.path("/", "a")), annotations=ann(denylist_source_range="127.0.0.0/8")),
        o.ingress("ok", o.rule("ok.com", o.path("/", "a")), annotations=ann(denylist_source_range="192.0.2.0/24")),
    )  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    for host, status in [("in.com", 200), ("out.com", 403), ("deny.com", 403), ("ok.com", 200)]:
        assert (await client.request(host, "/")).status == status, host


async def test_cookie_affinity(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, a=("a1", "a2", "a3", "a4"))
    o.put(store, o.ingress("i", o.rule("foo.com", o.path("/", "a")),
                           annotations=ann(affinity="cookie", session_cookie_name="my-route")))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    first = await client.request("foo.com", "/")
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith("my-route=")
    assert "Path=/" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    for header in (f"my-route={value}", f"a=1; my-route={value}; b=2", f"route=x;my-route={value}"):
        seen = {(await client.request("foo.com", "/", headers={"Cookie": header})).backend for _ in range(8)}
        assert len(seen) == 1, header
        assert "Set-Cookie" not in (await client.request("foo.com", "/", headers={"Cookie": header})).headers
    spread = {(await client.request("foo.com", "/", headers={"Cookie": f"my-route=c{i}"})).backend for i in range(40)}
    assert len(spread) > 1
    # Another cookie whose name ends the same is not the session cookie.
    assert "Set-Cookie" in (await client.request("foo.com", "/", headers={"Cookie": "xmy-route=1"})).headers


SESSION_COOKIES = [  # (host, path, annotations, Set-Cookie over HTTP, over HTTPS); ID is the session key
    ("plain.com", "/app", {}, "s=ID; Path=/app; HttpOnly", "s=ID; Path=/app; Secure; HttpOnly"),
    ("full.com", "/", {"session_cookie_path": "/x", "session_cookie_max_age": "60", "session_cookie_expires": "3600",
                       "session_cookie_samesite": "strict", "session_cookie_secure": "true"},
     "s=ID; Max-Age=60; Path=/x; Secure; HttpOnly; SameSite=Strict",
     "s=ID; Max-Age=60; Path=/x; Secure; HttpOnly; SameSite=Strict"),
    ("expires.com", "/", {"session_cookie_expires": "120", "session_cookie_samesite": "None"},
     "s=ID; Max-Age=120; Path=/; HttpOnly; SameSite=None",
     "s=ID; Max-Age=120; Path=/; Secure; HttpOnly; SameSite=None"),
    ("domain.com", "/d", {"session_cookie_domain": ".Domain.com"},
     "s=ID; Domain=.domain.com; Path=/d; HttpOnly", "s=ID; Domain=.domain.com; Path=/d; Secure; HttpOnly"),
    ("sub.domain.org", "/", {"session_cookie_domain": "sub.domain.org", "session_cookie_max_age": "30",
                             "session_cookie_samesite": "Lax"},
     "s=ID; Max-Age=30; Domain=sub.domain.org; Path=/; HttpOnly; SameSite=Lax",
     "s=ID; Max-Age=30; Domain=sub.domain.org; Path=/; Secure; HttpOnly; SameSite=Lax"),
]  # fmt: skip


async def test_session_cookie_attributes(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, a=("a1", "a2"))
    for host, path, extra, _, _ in SESSION_COOKIES:
        o.put(store, o.ingress(host.replace(".", "-"), o.rule(host, o.path(path, "a")),
                               annotations=ann(affinity="cookie", session_cookie_name="s", **extra)))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    for host, path, _, over_http, over_https in SESSION_COOKIES:
        for https, expected in [(False, over_http), (True, over_https)]:
            reply = await client.request(host, path, https=https, verify=False)
            key = reply.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
            assert re.fullmatch("[0-9a-f]{32}", key), reply.headers["Set-Cookie"]
            assert reply.headers["Set-Cookie"].replace(key, "ID") == expected, (host, https)
            sticky = await client.request(host, path, https=https, verify=False, headers={"Cookie": f"s={key}"})
            assert "Set-Cookie" not in sticky.headers
            assert sticky.backend is not None


async def test_https_redirect_trailing_slash(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, a=("a1",))
    o.put(
        store,
        o.ingress("strip", o.rule("strip.com", o.path("/", "a")), tls=[{"hosts": ["strip.com"]}]),
        o.ingress("keep", o.rule("keep.com", o.path("/", "a")), tls=[{"hosts": ["keep.com"]}],
                  annotations=ann(preserve_trailing_slash="true")),
        o.ingress("force", o.rule("force.com", o.path("/", "a")), annotations=ann(force_ssl_redirect="true")),
        o.ingress("force-keep", o.rule("force-keep.com", o.path("/", "a")),
                  annotations=ann(force_ssl_redirect="true", preserve_trailing_slash="true")),
    )  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    cases = [  # (host, request URI, URI in Location): ingress-nginx drops the last byte if it is "/"
        ("strip.com", "/p/", "/p"), ("strip.com", "/", ""), ("strip.com", "/p?x=1", "/p?x=1"),
        ("strip.com", "/p/?next=/", "/p/?next="), ("strip.com", "/a//", "/a/"),
        ("keep.com", "/p/", "/p/"), ("keep.com", "/", "/"), ("keep.com", "/p/?next=/", "/p/?next=/"),
        ("force.com", "/p/", "/p"), ("force-keep.com", "/p/", "/p/"),
    ]  # fmt: skip
    for host, uri, kept in cases:
        reply = await client.request(host, uri)
        assert reply.status == 308, (host, uri)
        assert reply.headers["Location"] == f"https://{host}:{controller.options.https_port}{kept}", (host, uri)


async def test_redirects_and_app_root(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, a=("a1",))
    o.put(
        store,
        o.ingress("perm", o.rule("perm.com", o.path("/", "a")), annotations=ann(permanent_redirect="https://new.example.com/x?a=1")),
        o.ingress("code", o.rule("code.com", o.path("/", "a")),
                  annotations=ann(permanent_redirect="https://new.example.com", permanent_redirect_code="308")),
        o.ingress("temp", o.rule("temp.com", o.path("/", "a")),
                  annotations=ann(temporal_redirect="http://t.example.com:8080/y")),
        o.ingress("root", o.rule("root.com", o.path("/", "a")), annotations=ann(app_root="/app1")),
    )  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    expected = [
        ("perm.com", "/q", 301, "https://new.example.com/x?a=1"), ("code.com", "/", 308, "https://new.example.com"),
        ("temp.com", "/", 302, "http://t.example.com:8080/y"), ("root.com", "/", 302, "http://root.com/app1"),
    ]  # fmt: skip
    for host, path, status, location in expected:
        reply = await client.request(host, path)
        assert (reply.status, reply.headers.get("Location")) == (status, location), host
    assert (await client.request("root.com", "/app1")).backend == "a1"


async def test_cors(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, a=("a1",))
    o.put(
        store,
        o.ingress("any", o.rule("any.com", o.path("/", "a")), annotations=ann(enable_cors="true")),
        o.ingress("list", o.rule("list.com", o.path("/", "a")), annotations=ann(
            enable_cors="true", cors_allow_origin="https://app.example.com, http://localhost:3000",
            cors_allow_methods="GET, POST", cors_allow_credentials="false", cors_max_age="60",
            cors_expose_headers="X-Total")),
    )  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    pre = await client.request("any.com", "/", method="OPTIONS", headers={"Origin": "https://x.org"})
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert pre.headers["Access-Control-Allow-Credentials"] == "true"
    assert "PATCH" in pre.headers["Access-Control-Allow-Methods"]
    get = await client.request("any.com", "/", headers={"Origin": "https://x.org"})
    assert get.backend == "a1"
    assert get.headers["Access-Control-Allow-Origin"] == "*"
    ok = await client.request("list.com", "/", headers={"Origin": "http://localhost:3000"})
    assert ok.backend == "a1"
    assert ok.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert ok.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert ok.headers["Access-Control-Max-Age"] == "60"
    assert ok.headers["Access-Control-Expose-Headers"] == "X-Total"
    assert "Access-Control-Allow-Credentials" not in ok.headers
    other = await client.request("list.com", "/", headers={"Origin": "https://evil.example.com"})
    assert other.backend == "a1"
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_limit_rps_and_connections(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, a=("a1",))
    o.put(store,
          o.ingress("slow", o.rule("slow.com", o.path("/", "a")),
                    annotations=ann(limit_rps="1", limit_burst_multiplier="1")),
          o.ingress("conn", o.rule("conn.com", o.path("/", "a")), annotations=ann(limit_connections="5")),
          o.ingress("free", o.rule("free.com", o.path("/", "a"))))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    limited = [(await client.request("slow.com", "/")).status for _ in range(8)]
    assert limited.count(200) >= 1
    assert limited.count(503) >= 5
    assert all([(await client.request("free.com", "/")).status == 200 for _ in range(8)])
    assert all([(await client.request("conn.com", "/")).status == 200 for _ in range(3)])
    # Seven slow requests at once against a limit of five connections per client address.
    slow = await asyncio.gather(*(client.request("conn.com", "/sleep/1") for _ in range(7)))
    assert sorted(r.status for r in slow) == [200] * 5 + [503] * 2


async def test_upstream_vhost(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, a=("a1",))
    vhost = ann(upstream_vhost="internal.svc:8080")
    o.put(store, o.ingress("i", o.rule("foo.com", o.path("/", "a")), annotations=vhost))
    controller = await start_controller(store)
    reply = await client_for(controller).request("foo.com", "/")
    assert reply.data["headers"]["Host"] == "internal.svc:8080"
    assert reply.data["headers"]["X-Forwarded-Host"] == "foo.com"


async def test_canary(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, main=("main1",), new=("new1",), other=("other1",))
    o.put(
        store,
        o.ingress("main", o.rule("foo.com", o.path("/", "main")), o.rule("bar.com", o.path("/", "main")),
                  created="2024-01-01T00:00:00Z"),
        o.ingress("by-header", o.rule("foo.com", o.path("/", "new")), created="2024-01-02T00:00:00Z",
                  annotations=ann(canary="true", canary_by_header="X-Canary")),
        o.ingress("all-weight", o.rule("bar.com", o.path("/", "new")), created="2024-01-02T00:00:00Z",
                  annotations=ann(canary="true", canary_weight="100", canary_by_header="X-Canary")),
        o.ingress("alone", o.rule("alone.com", o.path("/", "other")), annotations=ann(canary="true")),
    )  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    cases: list[tuple[str, dict[str, Any], str | int]] = [
        ("foo.com", {}, "main1"), ("foo.com", {"X-Canary": "always"}, "new1"),
        ("foo.com", {"X-Canary": "never"}, "main1"), ("bar.com", {}, "new1"),
        ("bar.com", {"X-Canary": "never"}, "main1"), ("alone.com", {}, 404),
    ]  # fmt: skip
    for host, headers, want in cases:
        for _ in range(3):
            reply = await client.request(host, "/", headers=headers)
            assert (reply.backend or reply.status) == want, (host, headers)


async def test_canary_by_header_value_pattern_and_cookie(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, main=("main1",), new=("new1",))
    canaries = {  # host -> the canary Ingress's annotations (besides canary: "true")
        "value.com": ann(canary_by_header="X-Canary", canary_by_header_value="v2"),
        "pattern.com": ann(canary_by_header="X-Region", canary_by_header_pattern="^eu-[a-z]+$"),
        "any.com": ann(canary_by_header="X-Any", canary_by_header_pattern=".*"),
        "moot.com": ann(canary_by_header="X-Canary", canary_by_header_value="v2", canary_by_header_pattern="."),
        "headerless.com": ann(canary_by_header_value="v2"),
        "cookie.com": ann(canary_by_cookie="canary-user"),
        "keywords.com": ann(canary_by_header="X-Canary", canary_by_cookie="c", canary_weight="100"),
        "valued.com": ann(canary_by_header="X-Canary", canary_by_header_value="yes", canary_by_cookie="c"),
    }
    for i, (host, extra) in enumerate(canaries.items()):
        o.put(store, o.ingress(f"main-{i}", o.rule(host, o.path("/", "main")), created="2024-01-01T00:00:00Z"),
              o.ingress(f"canary-{i}", o.rule(host, o.path("/", "new")), created="2024-01-02T00:00:00Z",
                        annotations={A + "canary": "true", **extra}))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    main, new = "main1", "new1"
    cases: list[tuple[str, dict[str, str], str]] = [
        # canary-by-header-value: that value only; "always"/"never" are plain values then.
        ("value.com", {}, main), ("value.com", {"X-Canary": "v2"}, new), ("value.com", {"X-Canary": "always"}, main),
        ("value.com", {"X-Canary": "V2"}, main),
        # canary-by-header-pattern: a case-sensitive search; no header, no match.
        ("pattern.com", {"X-Region": "eu-west"}, new), ("pattern.com", {"X-Region": "us-east"}, main),
        ("pattern.com", {"X-Region": "EU-west"}, main), ("pattern.com", {}, main),
        ("any.com", {}, main), ("any.com", {"X-Any": "x"}, new),
        ("moot.com", {"X-Canary": "other"}, main), ("moot.com", {"X-Canary": "v2"}, new),
        ("headerless.com", {"X-Canary": "v2"}, main),
        # canary-by-cookie: the first cookie of that name (in any case), "always" or "never".
        ("cookie.com", {"Cookie": "canary-user=always"}, new),
        ("cookie.com", {"Cookie": "a=1; Canary-User=always"}, new),
        ("cookie.com", {"Cookie": "a=1,canary-user = always"}, new),
        ("cookie.com", {"Cookie": "canary-user=yes"}, main), ("cookie.com", {"Cookie": "canary-user=never"}, main),
        ("cookie.com", {"Cookie": "canary-user=x; canary-user=always"}, main),
        ("cookie.com", {"Cookie": "xcanary-user=always"}, main), ("cookie.com", {}, main),
        # header, then cookie, then weight (100 here).
        ("keywords.com", {}, new), ("keywords.com", {"Cookie": "c=never"}, main),
        ("keywords.com", {"X-Canary": "always", "Cookie": "c=never"}, new),
        ("keywords.com", {"X-Canary": "never", "Cookie": "c=always"}, main),
        ("keywords.com", {"X-Canary": "other", "Cookie": "c=never"}, main),
        ("valued.com", {"X-Canary": "yes", "Cookie": "c=never"}, new),
        ("valued.com", {"X-Canary": "never", "Cookie": "c=always"}, new), ("valued.com", {"X-Canary": "never"}, main),
    ]  # fmt: skip
    for host, headers, want in cases:
        for _ in range(3):
            reply = await client.request(host, "/", headers=headers)
            assert reply.backend == want, (host, headers)


async def test_canary_with_rewrite_target(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, main=("main1",), new=("new1",))
    rx = {"rewrite_target": "/$2", "use_regex": "true"}
    o.put(
        store,
        o.ingress("main", o.rule("foo.com", o.path("/api(/|$)(.*)", "main", path_type="ImplementationSpecific")),
                  created="2024-01-01T00:00:00Z", annotations=ann(**rx)),
        o.ingress("c", o.rule("foo.com", o.path("/api(/|$)(.*)", "new", path_type="ImplementationSpecific")),
                  created="2024-01-02T00:00:00Z", annotations=ann(canary="true", canary_by_header="X-Canary", **rx)),
    )  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    for headers, want in [({}, "main1"), ({"X-Canary": "always"}, "new1")]:
        reply = await client.request("foo.com", "/api/v2/items", headers=headers)
        assert (reply.backend, reply.data["path"]) == (want, "/v2/items")


async def test_canary_weight_splits(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, main=("main1",), new=("new1",))
    o.put(
        store,
        o.ingress("main", o.rule("foo.com", o.path("/", "main")), created="2024-01-01T00:00:00Z"),
        o.ingress("c", o.rule("foo.com", o.path("/", "new")), created="2024-01-02T00:00:00Z",
                  annotations=ann(canary="true", canary_weight="50")),
    )  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    got = await asyncio.gather(*(client.request("foo.com", "/") for _ in range(60)))
    counts = {name: sum(r.backend == name for r in got) for name in ("main1", "new1")}
    assert counts["main1"] >= 10
    assert counts["new1"] >= 10
    assert sum(counts.values()) == 60


CANARY_WEIGHT_TOTALS = [  # (host, canary-weight, canary-weight-total, backends every request may reach)
    ("zero.com", "0", "1000", {"main1"}),
    ("full.com", "1000", "1000", {"new1"}),
    ("seven.com", "700", "700", {"new1"}),
    ("ten.com", "10", "10", {"main1", "new1"}),  # a total of 10 counts as 100 (ingress-nginx): 10%, not all
    ("tiny.com", "1", "1000", {"main1", "new1"}),  # 0.1%: its split is checked in the configuration
    ("over.com", "1001", "1000", {"main1"}),  # weight above the total: the canary Ingress is rejected
]  # fmt: skip


async def test_canary_weight_total(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, main=("main1",), new=("new1",))
    for i, (host, weight, total, _) in enumerate(CANARY_WEIGHT_TOTALS):
        o.put(store, o.ingress(f"main-{i}", o.rule(host, o.path("/", "main")), created="2024-01-01T00:00:00Z"),
              o.ingress(f"canary-{i}", o.rule(host, o.path("/", "new")), created="2024-01-02T00:00:00Z",
                        annotations=ann(canary="true", canary_weight=weight, canary_weight_total=total,
                                        canary_by_header="X-Canary")))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    for host, _, _, allowed in CANARY_WEIGHT_TOTALS:
        got = await asyncio.gather(*(client.request(host, "/") for _ in range(40)))
        assert {r.backend for r in got} <= allowed, host
        if len(allowed) == 1:  # the extremes are deterministic: every request goes the one way
            assert [r.backend for r in got] == [*allowed] * 40, host
        # The header still beats the weight, whatever the total.
        if host != "over.com":
            assert (await client.request(host, "/", headers={"X-Canary": "never"})).backend == "main1", host
            assert (await client.request(host, "/", headers={"X-Canary": "always"})).backend == "new1", host
    # Weights are live data, drawn per request by the balancer: nginx.conf holds none of them.
    assert "split_clients" not in controller.layout.conf.read_text()
    model = controller.model
    assert model is not None
    over = [i for i, case in enumerate(CANARY_WEIGHT_TOTALS) if case[0] == "over.com"]
    assert [(r.ingress, "is more than canary-weight-total 1000" in r.reason) for r in model.rejected] == [
        (f"default/canary-{i}", True) for i in over
    ]
    assert (await client.request("over.com", "/", headers={"X-Canary": "always"})).backend == "main1"


async def test_snippets_are_ignored_unless_allowed(start_controller, backends, client_for) -> None:
    snippets = ann(configuration_snippet='add_header X-Snippet "loc" always;',
                   server_snippet="location = /snip { return 200 server-snippet; }")  # fmt: skip
    for allowed in (False, True):
        store = Store()
        await services(backends, store, a=("a1",))
        o.put(store, o.config_map("cfg", {"allow-snippet-annotations": str(allowed).lower()}),
              o.ingress("i", o.rule("foo.com", o.path("/", "a")), annotations=snippets))  # fmt: skip
        controller = await start_controller(store, configmap=("default", "cfg"))
        client = client_for(controller)
        reply = await client.request("foo.com", "/")
        assert reply.backend == "a1"
        assert (reply.headers.get("X-Snippet") == "loc") is allowed
        assert ((await client.request("foo.com", "/snip")).text == "server-snippet") is allowed
        assert ("X-Snippet" in controller.layout.conf.read_text()) is allowed
