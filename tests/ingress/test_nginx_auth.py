"""Authentication through real nginx to real backends (ingress/features/): basic auth from
htpasswd Secrets (auth-file and auth-map), external auth with auth_request in front of an
aiohttp service shaped like oauth2-proxy, and client certificates (mTLS) with real TLS clients."""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import re
import ssl
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from kubewatch import Store
from tests.ingress import objects as o
from tests.ingress.conftest import free_ports, nginx_workers, services, until
from tests.ingress.tlsutil import Authority


def sha_hash(password: str) -> str:
    """An htpasswd {SHA} hash (nginx reads it; no external tool needed)."""
    return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def secret(name: str, data: dict[str, str], namespace: str = "default") -> o.Obj:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}  # fmt: skip


BASIC_SECRETS = [
    secret("htpasswd", {"auth": f"alice:{sha_hash('wonderland')}\nbob:{sha_hash('builder')}\n"}),
    secret("usermap", {"carol": sha_hash("singer"), "token": "not-a-hash-at-all"}),
    secret("noauthkey", {"other": "x"}),
    secret("broken", {"auth": "this is not an htpasswd file\n"}),
]
# (case, annotations, headers, status): what a user checks with curl.
BASIC_CASES: list[tuple[str, dict[str, str], dict[str, str], int]] = [
    ("file-no-credentials", {"auth-secret": "htpasswd"}, {}, 401),
    ("file-right", {"auth-secret": "htpasswd"}, basic("alice", "wonderland"), 200),
    ("file-second-user", {"auth-secret": "htpasswd"}, basic("bob", "builder"), 200),
    ("file-wrong-password", {"auth-secret": "htpasswd"}, basic("alice", "nope"), 401),
    ("file-unknown-user", {"auth-secret": "htpasswd"}, basic("mallory", "wonderland"), 401),
    ("map-right", {"auth-secret": "usermap", "auth-secret-type": "auth-map"}, basic("carol", "singer"), 200),
    ("map-not-a-hash", {"auth-secret": "usermap", "auth-secret-type": "auth-map"}, basic("token", "x"), 401),
    ("missing-secret", {"auth-secret": "nosuch"}, basic("alice", "wonderland"), 503),
    ("no-auth-key", {"auth-secret": "noauthkey"}, basic("alice", "wonderland"), 503),
    ("no-auth-secret", {}, basic("alice", "wonderland"), 503),
    ("other-namespace", {"auth-secret": "kube-system/htpasswd"}, basic("alice", "wonderland"), 503),
    ("broken-content", {"auth-secret": "broken"}, basic("alice", "wonderland"), 401),
    ("same-namespace-prefix", {"auth-secret": "default/htpasswd"}, basic("alice", "wonderland"), 200),
    ("with-cors", {"auth-secret": "htpasswd", "enable-cors": "true"}, {}, 401),  # CORS headers on the 401 too
]


async def test_basic_auth(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, web=("web",))
    o.put(store, *BASIC_SECRETS)
    for i, (case, extra, _, _) in enumerate(BASIC_CASES):
        annotations = o.ann(auth_type="basic", auth_realm=f"Realm {case}", **{k.replace("-", "_"): v
                                                                               for k, v in extra.items()})  # fmt: skip
        o.put(store, o.ingress(f"basic-{i}", o.rule(f"b{i}.test", o.path("/", "web")), annotations=annotations))
    controller = await start_controller(store)
    client = client_for(controller)
    for i, (case, extra, headers, status) in enumerate(BASIC_CASES):
        reply = await client.request(f"b{i}.test", "/private", headers=headers)
        assert reply.status == status, case
        if "enable-cors" in extra:
            assert reply.headers["Access-Control-Allow-Origin"] == "*"
        if status == 200:
            assert reply.backend == "web", case
        if status == 401:
            assert reply.headers["WWW-Authenticate"] == f'Basic realm="Realm {case}"', case
    # The file nginx's workers read: theirs, read-only, named by content, in a directory nobody lists.
    files = sorted((controller.layout.root / "auth").iterdir())
    assert files
    assert all(f.name.endswith(".htpasswd") for f in files)
    directory = os.stat(controller.layout.root / "auth")
    assert stat.S_IMODE(directory.st_mode) == 0o711
    for f in files:
        st = os.stat(f)
        assert stat.S_IMODE(st.st_mode) == 0o400
        if os.geteuid() == 0:
            assert st.st_uid == pwd.getpwnam("nobody").pw_uid
        assert b"not-a-hash" not in f.read_bytes()


async def test_basic_auth_follows_the_secret(start_controller, backends, client_for) -> None:
    """A new password in the Secret takes effect; a Secret deleted denies (503); the old file goes."""
    store = Store()
    await services(backends, store, web=("web",))
    o.put(store, BASIC_SECRETS[0], o.ingress("basic", o.rule("b.test", o.path("/", "web")),
                                             annotations=o.ann(auth_type="basic", auth_secret="htpasswd")))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    assert (await client.request("b.test", "/", headers=basic("alice", "wonderland"))).status == 200
    o.put(store, secret("htpasswd", {"auth": f"alice:{sha_hash('looking-glass')}\n"}))

    async def new_password() -> bool:
        return (await client.request("b.test", "/", headers=basic("alice", "looking-glass"))).status == 200

    await until(new_password)
    assert (await client.request("b.test", "/", headers=basic("alice", "wonderland"))).status == 401
    # The old file goes once nginx serves the new configuration (the reload's last step).
    await until(lambda: len(list((controller.layout.root / "auth").iterdir())) == 1)
    o.remove(store, BASIC_SECRETS[0])

    async def denied() -> bool:
        return (await client.request("b.test", "/", headers=basic("alice", "looking-glass"))).status == 503

    await until(denied)


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def digest_header(challenge: str, user: str, password: str, realm: str, uri: str, *, method: str = "GET",
                  qop: bool = True) -> str:  # fmt: skip
    """What a browser answers a Digest challenge with (RFC 7616, MD5)."""
    nonce = re.search(r'nonce="([^"]+)"', challenge)
    assert nonce is not None
    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    if not qop:
        response = md5(f"{ha1}:{nonce[1]}:{ha2}")
        return f'Digest username="{user}", realm="{realm}", nonce="{nonce[1]}", uri="{uri}", response="{response}"'
    response = md5(f"{ha1}:{nonce[1]}:00000001:c0ffee:auth:{ha2}")
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce[1]}", uri="{uri}", qop=auth, nc=00000001, '
            f'cnonce="c0ffee", response="{response}", algorithm=MD5')  # fmt: skip


async def test_digest_auth(start_controller, backends, client_for) -> None:
    """auth-type digest, done in Lua: a challenge, the right answer (with and without qop), wrong
    password, a nonce not ours, an answer for another URI, another realm."""
    store = Store()
    await services(backends, store, web=("web",))
    realm = "Digest Realm"
    htdigest = f"alice:{realm}:{md5(f'alice:{realm}:wonderland')}\n"
    o.put(store, secret("digest", {"auth": htdigest}),
          o.ingress("dig", o.rule("dig.test", o.path("/", "web")), annotations=o.ann(
              auth_type="digest", auth_secret="digest", auth_realm=realm)))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    first = await client.request("dig.test", "/p?q=1")
    assert first.status == 401
    challenge = first.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Digest realm="{realm}", nonce="')
    assert 'qop="auth"' in challenge
    cases = [  # (Authorization, path, status)
        (digest_header(challenge, "alice", "wonderland", realm, "/p?q=1"), "/p?q=1", 200),
        (digest_header(challenge, "alice", "wonderland", realm, "/p?q=1", qop=False), "/p?q=1", 200),
        (digest_header(challenge, "alice", "nope", realm, "/p?q=1"), "/p?q=1", 401),
        (digest_header(challenge, "alice", "wonderland", realm, "/p?q=1"), "/other", 401),
        (digest_header(challenge, "alice", "wonderland", "Other", "/p?q=1"), "/p?q=1", 401),
        (digest_header('nonce="1:forged"', "alice", "wonderland", realm, "/p?q=1"), "/p?q=1", 401),
        (digest_header(challenge, "bob", "wonderland", realm, "/p?q=1"), "/p?q=1", 401),
        ("Basic " + base64.b64encode(b"alice:wonderland").decode(), "/p?q=1", 401),
    ]
    for header, path, status in cases:
        reply = await client.request("dig.test", path, headers={"Authorization": header})
        assert reply.status == status, (header, path)
        if status == 200:
            assert reply.backend == "web"
    # A nonce not ours (a previous configuration's) with the right password: stale, so the client
    # retries with the new nonce without asking its user; a wrong password is not told so.
    stale = await client.request("dig.test", "/p?q=1", headers={"Authorization": cases[5][0]})
    assert "stale=true" in stale.headers["WWW-Authenticate"]
    wrong = digest_header('nonce="1:forged"', "alice", "nope", realm, "/p?q=1")
    assert "stale" not in (await client.request("dig.test", "/p?q=1", headers={"Authorization": wrong})).headers[
        "WWW-Authenticate"]  # fmt: skip


# --------------------------------------------------------------------------- external auth


@dataclass
class AuthService:
    """An aiohttp app shaped like oauth2-proxy: /oauth2/auth answers 202 with the user's headers
    and a refreshed cookie for a signed-in client (cookie _oauth2_proxy=<user>), else 401; a user
    named "banned" gets 403. Every sub-request it receives is recorded."""

    port: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    async def check(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.seen.append({"method": request.method, "path": request.path_qs, "headers": dict(request.headers),
                          "body": await request.read(), "peer": peer})  # fmt: skip
        user = request.cookies.get("_oauth2_proxy")
        if not user:
            return web.Response(status=401)
        if user == "banned":
            return web.Response(status=403)
        response = web.Response(status=202, headers={"X-Auth-Request-User": user,
                                                     "X-Auth-Request-Email": f"{user}@example.org"})  # fmt: skip
        if "quiet" not in request.query:  # (nginx caches no answer that sets a cookie, nor does ingress-nginx)
            response.set_cookie("_oauth2_proxy", user, path="/")  # oauth2-proxy refreshes its session cookie
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/oauth2/auth", self.check)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        self.port = free_ports(1)[0]
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth2/auth"


@pytest.fixture
async def auth_service() -> AsyncIterator[AuthService]:
    service = AuthService()
    await service.start()
    yield service
    await service.stop()


async def test_external_auth_like_oauth2_proxy(start_controller, backends, client_for, auth_service) -> None:
    store = Store()
    await services(backends, store, web=("web",))
    signin = "https://auth.example.org/oauth2/start"
    o.put(store, o.config_map("auth-headers", {"X-Tenant": "blue", "X-Client": "$remote_addr"}))
    o.put(store, o.ingress("app", o.rule("app.test", o.path("/", "web")), annotations=o.ann(
        auth_url=auth_service.url, auth_signin=signin,
        auth_response_headers="X-Auth-Request-User, X-Auth-Request-Email",
        auth_proxy_set_headers="auth-headers")))  # fmt: skip
    o.put(store, o.ingress("app2", o.rule("app2.test", o.path("/", "web")), annotations=o.ann(
        auth_url=auth_service.url + "?host=$host", auth_method="POST",
        auth_signin="https://$host/oauth2/start?rd=$escaped_request_uri",
        auth_request_redirect="/after", auth_always_set_cookie="true")))  # fmt: skip
    o.put(store, o.ingress("down", o.rule("down.test", o.path("/", "web")), annotations=o.ann(
        auth_url=f"http://127.0.0.1:{free_ports(1)[0]}/oauth2/auth")))  # fmt: skip
    o.put(store, o.ingress("kept", o.rule("kept.test", o.path("/", "web")),
                           annotations=o.ann(auth_url=auth_service.url, auth_keepalive="4")))  # fmt: skip
    o.put(store, o.ingress("nosigin", o.rule("nosignin.test", o.path("/", "web")),
                           annotations=o.ann(auth_url=auth_service.url)))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)

    # Not signed in: the sign-in page, with the original URL to come back to (rd).
    reply = await client.request("app.test", "/path/x?y=1&z=2")
    assert reply.status == 302
    location = reply.headers["Location"]
    assert location.startswith(signin + "?rd=")
    assert parse_qs(urlsplit(location).query)["rd"] == ["http://app.test/path/x?y=1&z=2"]
    sub = auth_service.seen[-1]
    assert sub["method"] == "GET"
    assert sub["path"] == "/oauth2/auth"
    assert sub["body"] == b""
    assert sub["headers"]["X-Original-URL"] == "http://app.test/path/x?y=1&z=2"
    assert sub["headers"]["X-Original-Method"] == "GET"
    assert sub["headers"]["X-Sent-From"] == "nginx-ingress-controller"
    assert sub["headers"]["X-Auth-Request-Redirect"] == "/path/x?y=1&z=2"
    assert sub["headers"]["Host"] == f"127.0.0.1:{auth_service.port}"
    assert sub["headers"]["X-Tenant"] == "blue"
    assert sub["headers"]["X-Client"] == "127.0.0.1"

    # Signed in: through, the user's headers passed upstream, the refreshed cookie to the client.
    reply = await client.request("app.test", "/path", headers={"Cookie": "_oauth2_proxy=alice"})
    assert reply.status == 200
    assert reply.backend == "web"
    upstream = reply.data["headers"]
    assert upstream["X-Auth-Request-User"] == "alice"
    assert upstream["X-Auth-Request-Email"] == "alice@example.org"
    assert upstream["Host"] == "app.test"  # the usual headers are still sent (proxy_headers.j2)
    assert upstream["X-Forwarded-Host"] == "app.test"
    assert "_oauth2_proxy=alice" in reply.headers["Set-Cookie"]
    # A client cannot forge the user: the auth service's answer replaces its header.
    reply = await client.request("app.test", "/", headers={"Cookie": "_oauth2_proxy=bob",
                                                           "X-Auth-Request-User": "admin"})  # fmt: skip
    assert reply.data["headers"]["X-Auth-Request-User"] == "bob"
    # 403 from the service is the client's answer.
    assert (await client.request("app.test", "/", headers={"Cookie": "_oauth2_proxy=banned"})).status == 403

    # Variables in the URLs, auth-method, auth-request-redirect; the sign-in URL names rd itself.
    reply = await client.request("app2.test", "/a%20b?c=d")
    assert reply.status == 302
    assert reply.headers["Location"] == "https://app2.test/oauth2/start?rd=%2Fa%2520b%3Fc%3Dd"
    sub = auth_service.seen[-1]
    assert sub["method"] == "POST"
    assert sub["path"] == "/oauth2/auth?host=app2.test"
    assert sub["headers"]["X-Auth-Request-Redirect"] == "/after"
    assert sub["headers"]["X-Original-URI"] == "/a%20b?c=d"
    reply = await client.request("app2.test", "/", headers={"Cookie": "_oauth2_proxy=carol"})
    assert reply.status == 200

    # auth-keepalive: the sub-requests reuse kept connections, at most one per nginx worker (each
    # client request, on a connection of its own, may meet either worker).
    for _ in range(6):
        assert (await client.request("kept.test", "/", headers={"Cookie": "_oauth2_proxy=gina"})).status == 200
    assert len({sub["peer"] for sub in auth_service.seen[-6:]}) <= len(nginx_workers(controller)) < 6
    assert auth_service.seen[-1]["headers"]["Host"] == f"127.0.0.1:{auth_service.port}"

    # No auth-signin: the 401 itself; an auth service that does not answer: 500, as ingress-nginx.
    assert (await client.request("nosignin.test", "/")).status == 401
    assert (await client.request("down.test", "/")).status == 500


# --------------------------------------------------------------------------- client certificates

ERROR_PAGE = "https://errors.example.org/certificate"
# host (under .mtls.test) -> its auth-tls-* annotations (besides auth-tls-secret: "client-ca")
CLIENT_TLS_HOSTS: dict[str, dict[str, str]] = {
    "on": {"auth_tls_pass_certificate_to_upstream": "true"},
    "opt": {"auth_tls_verify_client": "optional", "auth_tls_verify_depth": "2"},
    "noca": {"auth_tls_verify_client": "optional_no_ca"},
    "off": {"auth_tls_verify_client": "off"},
    "cn": {"auth_tls_match_cn": "CN=(bob|alice)"},
    "cnpart": {"auth_tls_match_cn": "CN=ali"},  # anchored: not alice
    "err": {"auth_tls_error_page": ERROR_PAGE},
    "nosecret": {"auth_tls_secret": "nosuch"},
    "noca-key": {"auth_tls_secret": "htpasswd"},  # a Secret without ca.crt
}
# (host, client: none | alice | mallory (another CA's), status, ssl-client-verify upstream or None)
CLIENT_TLS_CASES: list[tuple[str, str, int, str | None]] = [
    ("on", "none", 400, None),
    ("on", "alice", 200, "SUCCESS"),
    ("on", "mallory", 400, None),
    ("opt", "none", 200, "NONE"),
    ("opt", "alice", 200, "SUCCESS"),
    ("opt", "mallory", 400, None),
    ("noca", "mallory", 200, "FAILED:"),
    ("off", "none", 200, "NONE"),
    ("cn", "alice", 200, "SUCCESS"),
    ("cnpart", "alice", 403, None),
    ("cnpart", "none", 400, None),
    ("err", "none", 302, None),
    ("nosecret", "alice", 503, None),
    ("noca-key", "alice", 503, None),
    ("plain", "none", 200, None),  # a host without client certificates asks for none
]


def client_context(tmp_path: Path, trust: Authority, name: str, issuer: Authority | None) -> ssl.SSLContext:
    context = trust.client_context(tmp_path)
    if issuer is not None:
        crt, key = issuer.issue(name)
        (tmp_path / f"{name}.crt").write_bytes(crt)
        (tmp_path / f"{name}.key").write_bytes(key)
        context.load_cert_chain(tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
    return context


async def test_client_certificates(start_controller, backends, client_for, authority: Authority, tmp_path) -> None:
    store = Store()
    await services(backends, store, web=("web",))
    crt, key = authority.issue("*.mtls.test")
    o.put(store, o.tls_secret("mtls-tls", crt, key), BASIC_SECRETS[0],
          secret("client-ca", {"ca.crt": authority.pem.decode()}))  # fmt: skip
    for host, extra in CLIENT_TLS_HOSTS.items():
        annotations = o.ann(**{"auth_tls_secret": "client-ca", **extra})
        o.put(store, o.ingress(f"tls-{host}", o.rule(f"{host}.mtls.test", o.path("/", "web")), annotations=annotations,
                               tls=[{"hosts": [f"{host}.mtls.test"], "secretName": "mtls-tls"}]))  # fmt: skip
    o.put(store, o.ingress("tls-plain", o.rule("plain.mtls.test", o.path("/", "web")),
                           tls=[{"hosts": ["plain.mtls.test"], "secretName": "mtls-tls"}]))  # fmt: skip
    o.put(store, o.ingress("tls-http", o.rule("http.mtls.test", o.path("/", "web")),
                           annotations=o.ann(auth_tls_secret="client-ca")))  # fmt: skip
    controller = await start_controller(store)
    # A CA of another name (same name, other key would be a signature failure, which
    # optional_no_ca does not forgive; an unknown issuer it does).
    other = Authority.create("stranger CA")
    clients = {
        "none": client_for(controller, client_context(tmp_path, authority, "none", None)),
        "alice": client_for(controller, client_context(tmp_path, authority, "alice", authority)),
        "mallory": client_for(controller, client_context(tmp_path, authority, "mallory", other)),
    }
    for host, who, status, verify in CLIENT_TLS_CASES:
        reply = await clients[who].request(f"{host}.mtls.test", "/", https=True)
        assert reply.status == status, (host, who)
        if status == 200:
            headers = reply.data["headers"]
            if verify is None:
                assert "ssl-client-verify" not in {h.lower() for h in headers}, host
            else:
                assert headers["ssl-client-verify"].startswith(verify), (host, who)
        if status == 302:
            assert reply.headers["Location"] == ERROR_PAGE
    reply = await clients["alice"].request("on.mtls.test", "/", https=True)
    headers = reply.data["headers"]
    assert headers["ssl-client-subject-dn"] == "CN=alice"
    assert headers["ssl-client-issuer-dn"] == "CN=portolan test CA"
    assert "BEGIN%20CERTIFICATE" in headers["ssl-client-cert"]  # URL-encoded PEM, as ingress-nginx sends it
    reply = await clients["alice"].request("opt.mtls.test", "/", https=True)
    assert "ssl-client-cert" not in reply.data["headers"]  # only with auth-tls-pass-certificate-to-upstream
    # A client cannot forge the headers.
    reply = await clients["none"].request("opt.mtls.test", "/", https=True, headers={"ssl-client-verify": "SUCCESS"})
    assert reply.data["headers"]["ssl-client-verify"] == "NONE"
    # A connection made for a host without client certificates cannot be used for one with them
    # (HTTP/2 coalescing, or a forged Host): nginx answers 421.
    reply = await clients["none"].request("on.mtls.test", "/", https=True, sni="plain.mtls.test")
    assert reply.status == 421
    # Plain HTTP: a TLS host is redirected; one without TLS has no certificate to show: 403.
    assert (await clients["none"].request("on.mtls.test", "/")).status == 308
    assert (await clients["none"].request("http.mtls.test", "/")).status == 403
    # The CA file and the host's key: the master's only.
    for f in (controller.layout.root / "auth").iterdir():
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f


async def test_global_auth_and_cache(start_controller, backends, client_for, auth_service) -> None:
    """The ConfigMap's global-auth-url guards every Ingress but those with enable-global-auth
    "false" or their own auth-url; auth-cache-key keeps the service's answer per key."""
    store = Store()
    await services(backends, store, web=("web",))
    o.put(store, o.config_map("cfg", {"global-auth-url": auth_service.url + "?global=1",
                                      "global-auth-response-headers": "X-Auth-Request-User",
                                      "global-auth-signin": "https://login.example.org/",
                                      "allow-snippet-annotations": "true"}))  # fmt: skip
    o.put(store, o.ingress("snip", o.rule("snip.test", o.path("/", "web")), annotations=o.ann(
        auth_url=auth_service.url, auth_snippet="proxy_set_header X-From-Snippet yes;")))  # fmt: skip
    o.put(store, o.ingress("guarded", o.rule("guarded.test", o.path("/", "web"))))
    # cert-manager's HTTP-01 solver: ingress-nginx's no-auth-locations default exempts it.
    o.put(store, o.ingress("solver", o.rule("guarded.test", o.path("/.well-known/acme-challenge/tok", "web"))))
    o.put(store, o.ingress("public", o.rule("public.test", o.path("/", "web")),
                           annotations=o.ann(enable_global_auth="false")))  # fmt: skip
    o.put(store, o.ingress("cached", o.rule("cached.test", o.path("/", "web")), annotations=o.ann(
        auth_url=auth_service.url + "?quiet=1", auth_cache_key="$cookie__oauth2_proxy",
        auth_cache_duration="202 401 1m")))  # fmt: skip
    controller = await start_controller(store, configmap=("default", "cfg"))
    client = client_for(controller)

    reply = await client.request("guarded.test", "/x")
    assert reply.status == 302
    assert reply.headers["Location"] == "https://login.example.org/?rd=http://guarded.test%2Fx"
    assert auth_service.seen[-1]["path"] == "/oauth2/auth?global=1"
    reply = await client.request("guarded.test", "/", headers={"Cookie": "_oauth2_proxy=dave"})
    assert reply.data["headers"]["X-Auth-Request-User"] == "dave"
    asked = len(auth_service.seen)
    assert (await client.request("public.test", "/")).backend == "web"
    assert (await client.request("guarded.test", "/.well-known/acme-challenge/tok")).backend == "web"
    assert len(auth_service.seen) == asked

    # auth-snippet, allowed by the ConfigMap here: inside the sub-request's location.
    assert (await client.request("snip.test", "/")).status == 401
    assert auth_service.seen[-1]["headers"]["X-From-Snippet"] == "yes"
    asked = len(auth_service.seen)

    # Cached: one sub-request per key within the duration.
    for _ in range(3):
        reply = await client.request("cached.test", "/", headers={"Cookie": "_oauth2_proxy=erin"})
        assert reply.status == 200
    assert len(auth_service.seen) == asked + 1
    assert (await client.request("cached.test", "/")).status == 401
    assert (await client.request("cached.test", "/", headers={"Cookie": "_oauth2_proxy=frank"})).status == 200
    assert len(auth_service.seen) == asked + 3
