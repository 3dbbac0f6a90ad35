"""TLS through real nginx: certificates from kubernetes.io/tls Secrets chosen by SNI, the
self-signed or configured default certificate, 308 to HTTPS, key files 0600."""

from __future__ import annotations

import asyncio
import re
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from ingress.certs import DEFAULT_CN
from kubewatch import Store
from tests.ingress import objects as o
from tests.ingress.conftest import services
from tests.ingress.tlsutil import Authority


async def peer_certificate(port: int, sni: str) -> x509.Certificate:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=sni)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der)
    finally:
        writer.close()


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@pytest.fixture(params=[False, True], ids=["own-blocks", "pooled"])
async def tls_controller(start_controller, backends, authority: Authority, tmp_path, request: pytest.FixtureRequest):
    # Pooled (ingress/pooling.py), foo.com and nosecret.com share a redirecting, HSTS server
    # block, plain.com a plain one: redirects, HSTS and certificates must not change.
    if request.param:
        request.getfixturevalue("pool_every_host")
    store = Store()
    await services(backends, store, secure=("secure",), plain=("plain",))
    foo_crt, foo_key = authority.issue("foo.com")
    wild_crt, wild_key = authority.issue("*.wild.com")
    o.put(
        store,
        o.tls_secret("foo-tls", foo_crt, foo_key),
        o.tls_secret("wild-tls", wild_crt, wild_key),
        o.ingress(
            "secure",
            o.rule("foo.com", o.path("/", "secure")),
            o.rule("a.wild.com", o.path("/", "secure")),
            o.rule("*.wild.com", o.path("/", "secure")),
            o.rule("nosecret.com", o.path("/", "secure")),
            tls=[
                {"hosts": ["foo.com"], "secretName": "foo-tls"},
                {"hosts": ["*.wild.com", "a.wild.com"], "secretName": "wild-tls"},
                {"hosts": ["nosecret.com"], "secretName": "absent"},
            ],
        ),
        o.ingress("plain", o.rule("plain.com", o.path("/", "plain"))),
    )
    controller = await start_controller(store)
    return controller, authority.client_context(tmp_path)


async def test_certificate_chosen_by_sni(tls_controller, client_for) -> None:
    controller, ctx = tls_controller
    client = client_for(controller, ctx)
    for host in ("foo.com", "a.wild.com", "b.wild.com"):
        reply = await client.request(host, "/x", https=True)  # verified against the test CA, for this name
        assert reply.status == 200, host
        assert reply.backend == "secure", host
        assert reply.data["headers"]["X-Forwarded-Proto"] == "https"
        assert reply.headers["Strict-Transport-Security"].startswith("max-age=")
    https = controller.options.https_port
    assert common_name(await peer_certificate(https, "foo.com")) == "foo.com"
    assert common_name(await peer_certificate(https, "b.wild.com")) == "*.wild.com"


async def test_default_certificate_when_none_fits(tls_controller, client_for) -> None:
    controller, ctx = tls_controller
    https = controller.options.https_port
    for sni in ("nosecret.com", "plain.com", "unknown.com"):
        assert common_name(await peer_certificate(https, sni)) == DEFAULT_CN, sni
    # A host without TLS is still served over HTTPS (with the default certificate).
    reply = await client_for(controller).request("plain.com", "/", https=True, verify=False)
    assert reply.status == 200
    assert reply.backend == "plain"
    assert "Strict-Transport-Security" not in reply.headers
    with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await client_for(controller, ctx).request("plain.com", "/", https=True)


async def test_default_certificate_names_are_ingress_nginx_s(tls_controller) -> None:
    # Alerts and dashboards written for ingress-nginx spot its fake certificate by these names
    # (its e2e tests check the issuer CN): the literal values, subject and issuer alike.
    controller, _ = tls_controller
    fake = [("O", "Acme Co"), ("CN", "Kubernetes Ingress Controller Fake Certificate")]
    for sni in ("nosecret.com", "plain.com", "unknown.com"):
        cert = await peer_certificate(controller.options.https_port, sni)
        assert name_parts(cert.subject) == name_parts(cert.issuer) == fake, sni


def name_parts(name: x509.Name) -> list[tuple[str, str]]:
    return [(attr.rfc4514_attribute_name, str(attr.value)) for attr in name]


async def test_http_redirects_to_https_with_308(tls_controller, client_for) -> None:
    controller, _ = tls_controller
    client = client_for(controller)
    https = controller.options.https_port
    for host in ("foo.com", "b.wild.com", "nosecret.com"):
        reply = await client.request(host, "/path/x?q=1")
        assert reply.status == 308, host
        assert reply.headers["Location"] == f"https://{host}:{https}/path/x?q=1"
    # ACME HTTP-01 challenges stay on HTTP; hosts without TLS are not redirected.
    reply = await client.request("foo.com", "/.well-known/acme-challenge/token")
    assert reply.status == 200
    assert reply.backend == "secure"
    reply = await client.request("plain.com", "/")
    assert reply.status == 200
    assert reply.backend == "plain"


async def test_keys_stay_off_disk_but_the_fallback(tls_controller) -> None:
    # Certificates reach nginx through its shared memory (the live data plane): the only key on
    # disk is the controller's own fallback, private, in a private directory.
    controller, _ = tls_controller
    files = list(controller.layout.certs.glob("*.pem"))
    assert [f.name for f in files] == ["fallback.pem"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in files[0].read_bytes()
    assert stat.S_IMODE(controller.layout.certs.stat().st_mode) == 0o700
    assert stat.S_IMODE(controller.layout.run.stat().st_mode) == 0o700  # the data channel's socket


async def test_one_tls_context_whatever_the_hosts(tls_controller) -> None:
    # Only the catch-all server has a certificate of its own (nginx makes a TLS context per
    # server naming one, which at 10,000 hosts dominated nginx -t and every reload); the
    # others get theirs from the live data during the ClientHello.
    controller, _ = tls_controller
    conf = controller.layout.conf.read_text()
    loaded = re.findall(r"^\s*ssl_certificate (\S+);", conf, re.M)
    assert loaded == [f'"{controller.layout.certs}/fallback.pem"']
    assert conf.index(loaded[0]) > conf.index("# catch-all")
    assert conf.count("ssl_client_hello_by_lua_block") == 1
    assert conf.count("server {") > 3


async def test_configured_default_certificate(start_controller, authority: Authority) -> None:
    crt, key = authority.issue("default.example")
    store = Store()
    o.put(store, o.ingress_class(), o.tls_secret("fallback", crt, key, namespace="ingress"))
    controller = await start_controller(store, default_ssl_certificate=("ingress", "fallback"))
    cert = await peer_certificate(controller.options.https_port, "anything.com")
    assert common_name(cert) == "default.example"
