"""Annotation parsing: every supported annotation's typed value, and what each refuses."""

from __future__ import annotations

from typing import Any

import pytest

from ingress.annotations import NONE, PREFIX, Cors, parse
from ingress.validate import InvalidValue, regex_path


def one(name: str, value: str, *, snippets: bool = False, **extra: str) -> Any:
    raw = {PREFIX + name: value, **{PREFIX + k: v for k, v in extra.items()}}
    return parse(raw, allow_snippets=snippets)[0]


GOOD = [
    ("rewrite-target", "/$2", "rewrite_target", "/$2"),
    ("rewrite-target", "/api/v1/$1/x", "rewrite_target", "/api/v1/$1/x"),
    ("use-regex", "true", "use_regex", True),
    ("use-regex", "False", "use_regex", False),
    ("ssl-redirect", "false", "ssl_redirect", False),
    ("force-ssl-redirect", "true", "force_ssl_redirect", True),
    ("backend-protocol", "grpcs", "backend_protocol", "GRPCS"),
    ("backend-protocol", "HTTPS", "backend_protocol", "HTTPS"),
    ("proxy-body-size", "8M", "proxy_body_size", "8m"),
    ("proxy-body-size", "0", "proxy_body_size", "0"),
    ("proxy-connect-timeout", "10", "proxy_connect_timeout", 10),
    ("proxy-read-timeout", "3600s", "proxy_read_timeout", 3600),
    ("proxy-send-timeout", "1", "proxy_send_timeout", 1),
    ("proxy-buffering", "on", "proxy_buffering", True),
    ("enable-access-log", "false", "enable_access_log", False),
    ("enable-access-log", "true", "enable_access_log", True),
    ("whitelist-source-range", "10.0.0.1/8, 192.168.1.1,::1", "allow_source",
     ("10.0.0.0/8", "192.168.1.1/32", "::1/128")),
    ("allowlist-source-range", "2001:db8::/32", "allow_source", ("2001:db8::/32",)),
    ("denylist-source-range", "203.0.113.0/24", "deny_source", ("203.0.113.0/24",)),
    ("affinity", "cookie", "affinity", "cookie"),
    ("affinity-mode", "balanced", "affinity_mode", "balanced"),
    ("affinity-mode", "persistent", "affinity_mode", "persistent"),
    ("session-cookie-name", "route_1", "session_cookie_name", "route_1"),
    ("permanent-redirect", "https://www.example.com/a/b?x=1&y=2", "permanent_redirect",
     "https://www.example.com/a/b?x=1&y=2"),
    ("permanent-redirect", "HTTPS://Example.COM:8443", "permanent_redirect", "https://example.com:8443"),
    ("permanent-redirect", "http://[2001:db8::1]/", "permanent_redirect", "http://[2001:db8::1]/"),
    ("permanent-redirect-code", "308", "permanent_redirect_code", 308),
    ("temporal-redirect", "http://10.0.0.1:8080/x", "temporal_redirect", "http://10.0.0.1:8080/x"),
    ("app-root", "/app1", "app_root", "/app1"),
    ("limit-rps", "100", "limit_rps", 100),
    ("limit-connections", "20", "limit_connections", 20),
    ("limit-burst-multiplier", "3", "limit_burst_multiplier", 3),
    ("upstream-vhost", "Internal.Example.com", "upstream_vhost", "internal.example.com"),
    ("upstream-vhost", "svc.ns.svc.cluster.local:8080", "upstream_vhost", "svc.ns.svc.cluster.local:8080"),
    ("canary", "true", "canary", True),
    ("canary-weight", "25", "canary_weight", 25),
    ("canary-weight", "100", "canary_weight", 100),
    ("canary-weight-total", "1000", "canary_weight_total", 1000),
    ("canary-weight-total", "1", "canary_weight_total", 100),  # counts as 100, as in ingress-nginx
    ("canary-weight-total", "2147483647", "canary_weight_total", 2**31 - 1),
    ("canary-by-header", "X-Canary", "canary_by_header", "X-Canary"),
    ("load-balance", "ewma", "load_balance", "ewma"),
    ("load-balance", "round_robin", "load_balance", "round_robin"),
    ("upstream-hash-by", "$request_uri", "upstream_hash_by", "$request_uri"),
    ("upstream-hash-by", "$remote_addr$http_x_user", "upstream_hash_by", "$remote_addr$http_x_user"),
    ("upstream-hash-by", "${arg_id}-v1", "upstream_hash_by", "${arg_id}-v1"),
    ("upstream-hash-by", "$Cookie_s:$SSL_CLIENT_SERIAL", "upstream_hash_by", "$Cookie_s:$SSL_CLIENT_SERIAL"),
    ("canary-by-header-value", "eu-west_1.b~c:d/e", "canary_by_header_value", "eu-west_1.b~c:d/e"),
    ("canary-by-header-pattern", "^(v1|v2)-[a-z]+$", "canary_by_header_pattern", "^(v1|v2)-[a-z]+$"),
    ("canary-by-header-pattern", "beta", "canary_by_header_pattern", "beta"),
    ("canary-by-header-pattern", "^v[0-9]{1,2}$", "canary_by_header_pattern", "^v[0-9]{1,2}$"),
    ("canary-by-cookie", "canary_user-1", "canary_by_cookie", "canary_user-1"),
    ("session-cookie-path", "/app/v1", "session_cookie_path", "/app/v1"),
    ("session-cookie-expires", "172800", "session_cookie_expires", 172800),
    ("session-cookie-max-age", "0", "session_cookie_max_age", 0),
    ("session-cookie-samesite", "none", "session_cookie_samesite", "None"),
    ("session-cookie-samesite", "Strict", "session_cookie_samesite", "Strict"),
    ("session-cookie-samesite", "LAX", "session_cookie_samesite", "Lax"),
    ("session-cookie-secure", "true", "session_cookie_secure", True),
    ("session-cookie-domain", "example.com", "session_cookie_domain", "example.com"),
    ("session-cookie-domain", ".Example.COM", "session_cookie_domain", ".example.com"),
    ("session-cookie-domain", "a-1.b2.example", "session_cookie_domain", "a-1.b2.example"),
    ("session-cookie-domain", "localhost", "session_cookie_domain", "localhost"),
    ("preserve-trailing-slash", "true", "preserve_trailing_slash", True),
]  # fmt: skip


@pytest.mark.parametrize(("name", "value", "field", "expected"), GOOD, ids=lambda v: str(v)[:40])
def test_typed_values(name: str, value: str, field: str, expected: Any) -> None:
    assert getattr(one(name, value), field) == expected


BAD = [
    ("load-balance", "chash"), ("load-balance", "EWMA"), ("load-balance", "round_robin;"),
    ("upstream-hash-by", "request_uri"), ("upstream-hash-by", "$request_uri;"), ("upstream-hash-by", '$a"b'),
    ("upstream-hash-by", "$a b"), ("upstream-hash-by", "${a"), ("upstream-hash-by", "$1"), ("upstream-hash-by", "{$a}"),
    ("upstream-hash-by", "$" + "a" * 300), ("upstream-hash-by", "$nosuchvar"), ("upstream-hash-by", "${arg_id}$x"),
    ("upstream-hash-by", "$http_"), ("upstream-hash-by", "$portolan_route"), ("upstream-hash-by", "$portolan_hash_key"),
    ("rewrite-target", "relative"), ("rewrite-target", "/$0"), ("rewrite-target", "/${1}"), ("rewrite-target", "/$a"),
    ("enable-access-log", "off"), ("use-regex", "yes"), ("ssl-redirect", "1"), ("backend-protocol", "FCGI"),
    ("backend-protocol", "AUTO_HTTP"), ("proxy-body-size", "1mb"), ("proxy-body-size", "-1"),
    ("proxy-connect-timeout", "0"), ("proxy-connect-timeout", "1.5"), ("proxy-read-timeout", "1m"),
    ("proxy-send-timeout", "99999999999"), ("proxy-buffering", "true"), ("whitelist-source-range", " "),
    ("whitelist-source-range", "10.0.0.0/33"), ("whitelist-source-range", "10.0.0.0/8,"),
    ("denylist-source-range", "example.com"), ("affinity", "ip"), ("session-cookie-name", "my.cookie"),
    ("affinity-mode", "Balanced"), ("affinity-mode", "sticky"),
    ("session-cookie-name", "a,b"), ("permanent-redirect", "ftp://x.com/"), ("permanent-redirect", "/relative"),
    ("permanent-redirect", "https://user:pw@x.com/"), ("permanent-redirect", "https://x.com:99999/"),
    ("permanent-redirect", "https://-bad-.com/"), ("permanent-redirect-code", "200"), ("app-root", "/"),
    ("app-root", "app"), ("app-root", "/a/../b"), ("app-root", "/a%2fb"), ("limit-rps", "0"), ("limit-rps", "1e3"),
    ("limit-connections", "-5"), ("upstream-vhost", "a.com:0"), ("upstream-vhost", "*.a.com"),
    ("upstream-vhost", "10.0.0.1"), ("canary", "on"), ("canary-weight", "101"), ("canary-by-header", "X A"),
    ("canary-by-header", "X-A,X-B"), ("cors-allow-origin", "https://a.com/path"), ("cors-allow-origin", "null"),
    ("cors-allow-methods", "get"), ("cors-max-age", "-1"), ("enable-cors", "1"),
    ("canary-by-header-value", "a b"), ("canary-by-header-value", "a,b"), ("canary-by-header-value", "x" * 257),
    ("canary-by-header-pattern", "a{99999}"), ("canary-by-header-pattern", "a${x}"),
    ("canary-by-header-pattern", "\\d+"), ("canary-by-header-pattern", "(?i)a"),
    ("canary-by-header-pattern", "(a"), ("canary-by-header-pattern", "*a"), ("canary-by-header-pattern", "a$b"),
    ("canary-by-cookie", "a.b"), ("canary-by-cookie", "a=b"), ("session-cookie-path", "app"),
    ("session-cookie-path", "/a b"), ("session-cookie-expires", "-1"), ("session-cookie-expires", "1d"),
    ("session-cookie-max-age", "2147483648"), ("session-cookie-samesite", "sometimes"),
    ("session-cookie-secure", "yes"), ("preserve-trailing-slash", "on"),
    ("canary-weight", "-1"), ("canary-weight", "1.5"), ("canary-weight", "10%"),
    ("canary-weight-total", "0"), ("canary-weight-total", "-100"), ("canary-weight-total", "1e3"),
    ("canary-weight-total", "100.0"), ("canary-weight-total", "2147483648"),
    ("canary-weight-total", "\uff11\uff10\uff10"),  # fullwidth "100": int() takes it, the annotation must not
    ("session-cookie-domain", "."), ("session-cookie-domain", "..a.com"), ("session-cookie-domain", "a..com"),
    ("session-cookie-domain", "a.com."), ("session-cookie-domain", "*.a.com"), ("session-cookie-domain", "a.com:80"),
    ("session-cookie-domain", "10.0.0.1"), ("session-cookie-domain", ".10.0.0.1"), ("session-cookie-domain", "[::1]"),
    ("session-cookie-domain", "-a.com"), ("session-cookie-domain", "a_b.com"), ("session-cookie-domain", "a b.com"),
    ("session-cookie-domain", "a.com;"), ("session-cookie-domain", "bücher.de"), ("session-cookie-domain", "a/b"),
    ("session-cookie-domain", "a" * 64 + ".com"), ("session-cookie-domain", ".".join(["a" * 60] * 5)),
    ("session-cookie-domain", "\u212a.com"),  # the Kelvin sign, "k" once lower-cased: not ASCII
]  # fmt: skip


@pytest.mark.parametrize(("name", "value"), BAD, ids=lambda v: str(v)[:40])
def test_invalid_values_reject_the_ingress(name: str, value: str) -> None:
    with pytest.raises(InvalidValue, match=name):
        one(name, value)


CANARY_WEIGHTS = [  # (canary-weight, canary-weight-total or None, the total that counts; None: rejected)
    ("0", None, 100), ("100", None, 100), ("101", None, None),
    ("0", "1000", 1000), ("1", "1000", 1000), ("1000", "1000", 1000), ("1001", "1000", None),
    ("1", "101", 101), ("102", "101", None),
    # As in ingress-nginx, a total of 100 or less counts as 100: 50 "of 10" is 50%, 5 of 10 is 5%.
    ("1", "1", 100), ("2", "1", 100), ("50", "10", 100), ("5", "10", 100), (None, "10", 100), ("101", "10", None),
]  # fmt: skip


@pytest.mark.parametrize(("weight", "total", "counted"), CANARY_WEIGHTS, ids=str)
def test_canary_weight_is_within_its_total(weight: str | None, total: str | None, counted: int | None) -> None:
    raw = {PREFIX + k: v for k, v in (("canary", "true"), ("canary-weight", weight), ("canary-weight-total", total))
           if v is not None}
    if counted is not None:
        ann, notes = parse(raw, allow_snippets=False)
        assert (ann.canary_weight, ann.canary_weight_total) == (int(weight or 0), counted)
        below = total is not None and int(total) < 100
        assert any(f"canary-weight-total: {total} counts as 100" in n for n in notes) is below
    else:
        with pytest.raises(InvalidValue, match=r"canary-weight: .* is more than canary-weight-total"):
            parse(raw, allow_snippets=False)


@pytest.mark.parametrize(("weight", "total"), [("1", "300"), ("1", "3"), ("999999", "1000000"), ("1", str(2**31 - 1))])
def test_any_weight_within_its_total_is_exact(weight: str, total: str) -> None:
    # The live balancer draws a whole number out of the total per request, as ingress-nginx's
    # does: no share is rounded, so nothing is noted.
    raw = {PREFIX + "canary": "true", PREFIX + "canary-weight": weight, PREFIX + "canary-weight-total": total}
    ann, notes = parse(raw, allow_snippets=False)
    assert (ann.canary_weight, ann.canary_weight_total) == (int(weight), max(int(total), 100))
    if int(total) >= 100:
        assert notes == []
    else:
        assert len(notes) == 1
        assert f"canary-weight-total: {total} counts as 100" in notes[0]


def test_defaults_and_unrelated_annotations() -> None:
    ann, notes = parse({"kubernetes.io/ingress.class": "x;y", "example.com/z": "{"}, allow_snippets=False)
    assert ann == NONE
    assert notes == []
    assert (NONE.ssl_redirect, NONE.backend_protocol, NONE.session_cookie_name, NONE.cors) == (
        None,
        "HTTP",
        "INGRESSCOOKIE",
        None,
    )


def test_unknown_annotation_is_ignored_with_a_note() -> None:
    ann, notes = parse({PREFIX + "mirror-target": "http://x", PREFIX + "x\nforged log line": "1"},
                       allow_snippets=False)  # fmt: skip
    assert ann == NONE
    assert notes == [
        f"annotation '{PREFIX}mirror-target' is not supported; ignored",
        f"annotation '{PREFIX}x\\nforged log line' is not supported; ignored",
    ]


def test_cors_settings_only_with_enable_cors() -> None:
    assert one("cors-allow-origin", "https://a.com").cors is None
    cors = one("enable-cors", "true", **{"cors-allow-origin": "https://a.com, http://b.org:8080",
                                         "cors-allow-credentials": "false", "cors-max-age": "10"})  # fmt: skip
    assert cors.cors == Cors(origins=("https://a.com", "http://b.org:8080"), credentials=False, max_age=10)
    assert cors.cors.origin_regex == "^(https://a[.]com|http://b[.]org:8080)$"
    assert one("enable-cors", "true").cors == Cors()


@pytest.mark.parametrize("allowed", [False, True])
def test_snippets_need_the_configmap_switch(allowed: bool) -> None:
    raw = {PREFIX + "configuration-snippet": "more_set_headers x;\n", PREFIX + "server-snippet": "# s"}
    ann, notes = parse(raw, allow_snippets=allowed)
    assert (ann.configuration_snippet is not None, ann.server_snippet is not None) == (allowed, allowed)
    assert len(notes) == (0 if allowed else 2)


@pytest.mark.parametrize(("max_age", "note"), [(None, "sent as Max-Age"), ("60", "session-cookie-max-age sets")])
def test_session_cookie_expires_has_a_note(max_age: str | None, note: str) -> None:
    raw = {PREFIX + "affinity": "cookie", PREFIX + "session-cookie-expires": "3600"}
    if max_age is not None:
        raw[PREFIX + "session-cookie-max-age"] = max_age
    ann, notes = parse(raw, allow_snippets=False)
    assert ann.session_cookie_expires == 3600
    assert len(notes) == 1
    assert note in notes[0]


def test_regex_and_rewrite_make_regex_mode() -> None:
    assert one("use-regex", "true").regex
    assert one("rewrite-target", "/").regex
    assert not one("use-regex", "false").regex


@pytest.mark.parametrize(
    "value",
    ["/foo", "/something(/|$)(.*)", "/api/v[0-9]+/.*", "/(a|b)?/x*", "/[a-z]+$",
     # quantifiers with braces (ingress-nginx's own example), and braces PCRE takes as plain characters
     "/foo/bar/[A-Z0-9]{3}", "/a{2}", "/v[0-9]{1,2}/x", "/a{2,}", "/a{65535}", "/{name}", "/a{"],
)  # fmt: skip
def test_regex_paths_accepted(value: str) -> None:
    assert regex_path(value, "p") == value


@pytest.mark.parametrize(
    "value",
    ["foo", "/a\\d", "/(?i)x", "/a$b", "/a b", "/a;b", '/a"', "/a#", "/(", "/a\n", "/" + "a" * 300,
     # braces: a count over PCRE's limit (Python's re would take it), a repeated repeat, a variable
     "/a{65536}", "/a{1,99999999999999999999}", "/a{2}{3}", "/a${x}", "/(?<host>x)", '/a{1}"}'],
)  # fmt: skip
def test_regex_paths_refused(value: str) -> None:
    with pytest.raises(InvalidValue):
        regex_path(value, "p")


def test_unsupported_multiline_annotation_does_not_cost_the_ingress() -> None:
    raw = {PREFIX + "modsecurity-snippet": "SecRuleEngine On\nSecRule x", PREFIX + "proxy-body-size": "2m"}
    ann, notes = parse(raw, allow_snippets=False)
    assert ann.proxy_body_size == "2m"
    assert len(notes) == 1


def test_empty_value_means_unset() -> None:
    raw = {PREFIX + "rewrite-target": "", PREFIX + "whitelist-source-range": "", PREFIX + "use-regex": ""}
    ann, notes = parse(raw, allow_snippets=False)
    assert ann == NONE
    assert len(notes) == 3


# (affinity-mode, noted?): balanced is what the consistent cookie hash does; persistent is served so too
AFFINITY_MODES = [(None, False), ("balanced", False), ("persistent", True)]


@pytest.mark.parametrize(("mode", "noted"), AFFINITY_MODES, ids=str)
def test_affinity_mode(mode: str | None, noted: bool) -> None:
    raw = {PREFIX + "affinity": "cookie", **({PREFIX + "affinity-mode": mode} if mode else {})}
    ann, notes = parse(raw, allow_snippets=False)
    assert ann.affinity_mode == (mode or "balanced")
    assert [n for n in notes if "affinity-mode" in n] == (
        [f"annotation {PREFIX}affinity-mode: persistent is served as balanced: when endpoints are added, "
         "about 1 in n sessions moves to a new one"] if noted else [])
