"""The feature groups (ingress/features/) without nginx: what each annotation parses to, what is
refused, what resolving against Secrets and ConfigMaps gives, and that a host with any of them
leaves the pool."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from ingress import features
from ingress.annotations import parse
from ingress.features.auth import BasicAuth
from ingress.features.backend_tls import BackendTLS
from ingress.features.client_tls import ClientTLS
from ingress.features.external_auth import ExternalAuth
from ingress.features.proxy import Proxy
from ingress.features.rate_limit import RateLimit
from ingress.model import Model
from ingress.modelcache import build
from ingress.pooling import pool_of
from ingress.settings import NginxSettings, parse_settings
from ingress.validate import InvalidValue
from tests.ingress import objects as o
from tests.ingress.modelkit import fake_addresses, snapshot, store_of
from tests.ingress.objects import A
from tests.ingress.routing import standard_objects
from tests.ingress.tlsutil import Authority

URL = "http://10.0.0.1:4180/oauth2/auth"

# (annotations without the prefix, the group's value)
PARSED: list[tuple[dict[str, str], Any]] = [
    ({"auth-type": "basic", "auth-secret": "s"}, BasicAuth("s")),
    ({"auth-type": "basic", "auth-secret": "ns/s", "auth-secret-type": "auth-map", "auth-realm": "Who are you?"},
     BasicAuth("s", "ns", "auth-map", "Who are you?")),
    ({"auth-type": "basic"}, BasicAuth("")),  # denied (503) once resolved
    ({"auth-type": "digest", "auth-secret": "s", "auth-realm": "r"}, BasicAuth("s", realm="r", kind="digest")),
    ({"auth-url": URL}, ExternalAuth(URL, "10.0.0.1:4180")),
    ({"auth-url": "https://$host/oauth2/auth", "auth-signin": "https://$host/oauth2/start?rd=$escaped_request_uri"},
     ExternalAuth("https://${host}/oauth2/auth", "${host}",
                  signin="https://${host}/oauth2/start?rd=${portolan_escaped_uri}")),
    ({"auth-url": URL, "auth-method": "POST", "auth-response-headers": "X-User, X-Email",
      "auth-cache-key": "$remote_user$http_authorization", "auth-cache-duration": "200 202 401 5m, 500 10s",
      "auth-always-set-cookie": "true", "auth-request-redirect": "/back", "auth-signin-redirect-param": "next"},
     ExternalAuth(URL, "10.0.0.1:4180", method="POST", response_headers=("X-User", "X-Email"),
                  cache_key="$remote_user$http_authorization", cache_duration=("200 202 401 5m", "500 10s"),
                  always_set_cookie=True, request_redirect="/back", redirect_param="next")),
    ({"enable-global-auth": "false"}, ExternalAuth(global_auth=False)),
    ({"enable-global-auth": "true"}, None),
    ({"auth-signin": "https://a.example/"}, None),  # without auth-url: ignored (with a note)
    ({"auth-tls-secret": "ca"}, ClientTLS("ca")),
    ({"auth-tls-secret": "ca", "auth-tls-verify-client": "optional_no_ca", "auth-tls-verify-depth": "3",
      "auth-tls-match-cn": "CN=(a|b)[.]example", "auth-tls-error-page": "https://e.example/x",
      "auth-tls-pass-certificate-to-upstream": "true"},
     ClientTLS("ca", verify="optional_no_ca", depth=3, match_cn="(a|b)[.]example", error_page="https://e.example/x",
               pass_certificate=True)),
    ({"auth-tls-verify-client": "on"}, None),  # without auth-tls-secret: ignored
    ({"proxy-ssl-secret": "ns/ca", "proxy-ssl-verify": "on", "proxy-ssl-verify-depth": "2",
      "proxy-ssl-name": "b.local", "proxy-ssl-server-name": "on", "proxy-ssl-protocols": "TLSv1.2 TLSv1.3",
      "proxy-ssl-ciphers": "HIGH:!aNULL"},
     BackendTLS("ca", "ns", True, 2, "b.local", True, ("TLSv1.2", "TLSv1.3"), "HIGH:!aNULL")),
    ({"proxy-ssl-verify": "on"}, None),  # without proxy-ssl-secret: ignored
    ({"proxy-http-version": "1.0", "proxy-next-upstream": "error timeout", "proxy-next-upstream-tries": "2",
      "proxy-next-upstream-timeout": "5s", "proxy-buffer-size": "16K", "proxy-buffers-number": "8",
      "x-forwarded-prefix": "/api", "proxy-cookie-domain": "off", "proxy-cookie-path": "/a /b",
      "proxy-redirect-from": "http://a.local/", "proxy-redirect-to": "/"},
     Proxy(http_version="1.0", next_upstream=("error", "timeout"), next_upstream_tries=2, next_upstream_timeout=5,
           buffer_size="16k", buffers_number=8, forwarded_prefix="/api", cookie_domain=("off",),
           cookie_path=("/a", "/b"), redirect_from="http://a.local/", redirect_to="/")),
    ({"proxy-redirect-to": "/x"}, Proxy()),  # without proxy-redirect-from: ignored (with a note)
    ({"limit-rpm": "30", "limit-rate": "100", "limit-rate-after": "0", "limit-whitelist": "10.0.0.1/8, ::1"},
     RateLimit(30, 100, 0, ("10.0.0.0/8", "::1/128"))),
    ({"limit-rate": "0", "limit-allowlist": "10.1.0.0/16", "limit-whitelist": "10.2.0.0/16"},
     RateLimit(allowlist=("10.1.0.0/16",))),  # limit-rate 0: no limit; the older name yields
]  # fmt: skip
REFUSED: list[dict[str, str]] = [
    {"auth-type": "digest", "auth-secret": "s", "auth-secret-type": "auth-map"},
    {"auth-type": "ntlm"},
    {"auth-type": "basic", "auth-realm": "off"},
    {"auth-type": "basic", "auth-secret-type": "auth-ldap"},
    {"auth-url": "ftp://a.example/"},
    {"auth-url": "http://a.example/$request_body"},
    {"auth-url": URL, "auth-signin": "https://a.example/?rd=$cookie_x"},
    {"auth-url": URL, "auth-cache-duration": "5 minutes"},
    {"auth-url": URL, "auth-cache-key": "$no_such_variable"},
    {"auth-url": URL, "auth-keepalive": "-1"},
    {"auth-tls-secret": "ca", "auth-tls-verify-client": "required"},
    {"auth-tls-secret": "ca", "auth-tls-verify-depth": "0"},
    {"auth-tls-secret": "ca", "auth-tls-match-cn": "authtls"},  # must start with CN=
    {"auth-tls-secret": "ca", "auth-tls-match-cn": "CN=a\\d"},
    {"proxy-ssl-secret": "ca", "proxy-ssl-verify": "true"},
    {"proxy-ssl-secret": "ca", "proxy-ssl-protocols": "SSLv3"},
    {"proxy-ssl-secret": "ca", "proxy-ssl-name": "$host"},
    {"proxy-http-version": "2"},
    {"proxy-next-upstream": "off error"},
    {"proxy-buffers-number": "2"},
    {"proxy-buffer-size": "0"},
    {"proxy-redirect-from": "http://a.local/"},
    {"proxy-cookie-path": "/a"},
    {"x-forwarded-prefix": "/../etc"},
    {"limit-rpm": "0"},
    {"limit-rate": "-1"},
    {"limit-allowlist": "10.0.0.0/33"},
]


@pytest.mark.parametrize(("raw", "value"), PARSED)
def test_parse(raw: dict[str, str], value: Any) -> None:
    ann, _ = parse({A + k: v for k, v in raw.items()}, allow_snippets=False)
    assert ann.features == ((value,) if value is not None else ())


@pytest.mark.parametrize("raw", REFUSED)
def test_refused(raw: dict[str, str]) -> None:
    with pytest.raises(InvalidValue):
        parse({A + k: v for k, v in raw.items()}, allow_snippets=False)


def test_auth_snippet_only_with_snippets() -> None:
    raw = {A + "auth-url": URL, A + "auth-snippet": "proxy_set_header X-A 1;"}
    off, notes = parse(raw, allow_snippets=False)
    assert off.features[0].snippet is None
    assert any("auth-snippet" in n for n in notes)
    on, _ = parse(raw, allow_snippets=True)
    assert on.features[0].snippet == "proxy_set_header X-A 1;"


def test_groups_describe_themselves() -> None:
    for feature in features.FEATURES:
        assert feature.scope in (features.LOCATION, features.SERVER)
        assert feature.risk in ("Low", "Medium", "High", "Critical")
        assert feature.differs
        assert set(feature.ignored) <= set(feature.annotations)


def _secret(name: str, data: dict[str, bytes]) -> o.Obj:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": "default"},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}  # fmt: skip


def _model(annotations: dict[str, str], *extra: o.Obj, settings: NginxSettings | None = None) -> Model:
    ing = o.ingress("i", o.rule("foo.com", o.path("/", "a")), annotations={A + k: v for k, v in annotations.items()})
    store = store_of(*standard_objects(fake_addresses()), *extra, ing)
    return build(snapshot(store, settings=settings or NginxSettings(host_pool_threshold=0)))


def _values(model: Model) -> tuple[Any, ...]:
    server = model.server("foo.com")
    assert server is not None
    return features.location_values(server, server.locations[0])


CA = Authority.create().pem
# (annotations, objects, what the resolved value says: denied reason or "" when usable)
RESOLVED: list[tuple[dict[str, str], tuple[o.Obj, ...], str]] = [
    ({"auth-type": "basic", "auth-secret": "h"}, (_secret("h", {"auth": b"u:{SHA}x"}),), ""),
    ({"auth-type": "basic", "auth-secret": "h"}, (), "Secret default/h not found"),
    ({"auth-type": "basic", "auth-secret": "h"}, (_secret("h", {"tls.crt": b"x"}),),
     "Secret default/h has no key auth"),
    ({"auth-type": "basic", "auth-secret": "other/h"}, (), "Secret other/h is in another namespace (not allowed)"),
    ({"auth-type": "basic", "auth-secret": "h", "auth-secret-type": "auth-map"}, (_secret("h", {}),), ""),
    ({"auth-url": URL, "auth-proxy-set-headers": "hdrs"}, (o.config_map("hdrs", {"X-A": "b"}),), ""),
    ({"auth-url": URL, "auth-proxy-set-headers": "hdrs"}, (), "ConfigMap default/hdrs not found"),
    ({"auth-url": URL, "auth-proxy-set-headers": "hdrs"}, (o.config_map("hdrs", {"X-A": "$nope"}),),
     "ConfigMap default/hdrs: X-A: $nope is not a variable nginx has (such as $request_uri, $remote_addr, "
     "$arg_NAME, $http_NAME or $cookie_NAME)"),
    ({"auth-url": URL, "auth-proxy-set-headers": "hdrs"}, (o.config_map("hdrs", {"X A": "b"}),),
     "ConfigMap default/hdrs: 'X A' is not a header name with a plain value"),
    ({"auth-tls-secret": "ca"}, (_secret("ca", {"ca.crt": CA}),), ""),
    ({"auth-tls-secret": "ca"}, (_secret("ca", {"ca.crt": b"junk"}),), "Secret default/ca: ca.crt:"),
    ({"auth-tls-secret": "ca"}, (), "Secret default/ca not found"),
]  # fmt: skip


@pytest.mark.parametrize(("annotations", "objects", "denied"), RESOLVED)
def test_resolve(annotations: dict[str, str], objects: tuple[o.Obj, ...], denied: str) -> None:
    model = _model(annotations, *objects)
    (value,) = _values(model)
    if denied:
        assert value.denied.startswith(denied)
        assert any(denied in n for n in model.notes)
    else:
        assert value.denied == ""
    assert pool_of(model.servers[1], model.settings) is None  # any feature value: a block of its own


def test_plain_host_still_pooled() -> None:
    model = _model({})
    assert pool_of(model.servers[1], model.settings) is not None


def test_global_auth_from_the_configmap() -> None:
    settings, problems = parse_settings({
        "global-auth-url": URL, "global-auth-signin": "https://login.example/",
        "global-auth-response-headers": "X-User", "host-pool-threshold": "0",
    })  # fmt: skip
    assert problems == []
    (value,) = _values(_model({}, settings=settings))
    assert value == ExternalAuth(URL, "10.0.0.1:4180", signin="https://login.example/", response_headers=("X-User",),
                                 exempt=("/.well-known/acme-challenge",))
    assert _values(_model({"enable-global-auth": "false"}, settings=settings)) == ()
    (own,) = _values(_model({"auth-url": "http://10.0.0.2/a"}, settings=settings))
    assert own.url == "http://10.0.0.2/a"


def test_auth_map_keeps_only_password_hashes() -> None:
    secret = o.record(_secret("m", {
        "alice": b"$apr1$abcdefgh$0123456789abcdefghijkl", "bob": b"{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=",
        "api-token": b"s3cr3t-t0ken", "auth": b"x:y",
    }))  # fmt: skip
    assert sorted(secret.data) == ["alice", "auth", "bob"]  # type: ignore[union-attr]


def test_readme_lists_the_groups() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    marker = "checked by tests/ingress/test_features.py -->\n"
    start = readme.index(marker) + len(marker)
    assert readme[start : readme.index("<!-- end features table -->")] == features.markdown()
