"""Typed validation of every user string that can reach nginx.conf (tables)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ingress import validate
from ingress.validate import InvalidValue, nginx_quote


def check(func: Callable[[object, str], object], raw: object, expected: object | None) -> None:
    """``expected`` None: ``raw`` is refused; otherwise what it is accepted as."""
    if expected is None:
        with pytest.raises(InvalidValue):
            func(raw, "f")
    else:
        assert func(raw, "f") == expected


HOSTS = [
    ("foo.com", "foo.com"),
    ("FOO.Com", "foo.com"),
    ("*.foo.com", "*.foo.com"),
    ("a-b.c-d.example", "a-b.c-d.example"),
    ("x" * 63 + ".com", "x" * 63 + ".com"),
    ("foo.com;", None),
    ("foo.com\n", None),
    ("foo .com", None),
    ("foo.*.com", None),
    ("*foo.com", None),
    ("*", None),
    ("-foo.com", None),
    ("foo-.com", None),
    ("foo..com", None),
    ("x" * 64 + ".com", None),
    (".".join(["a" * 60] * 5), None),  # 304 characters
    ("1.2.3.4", None),
    ("foo.com:80", None),
    ("foo_bar.com", None),
    ('foo.com"', None),
    ("$host", None),
    ("\u212aube.example", None),  # a Kelvin sign lower-cases to "k": not ASCII, not a host
    ("bücher.de", None),  # IDN hosts come as punycode (xn--...), as Kubernetes requires
    ("", None),
    (None, None),
    (42, None),
]


@pytest.mark.parametrize(("raw", "expected"), HOSTS, ids=repr)
def test_host(raw: object, expected: str | None) -> None:
    check(validate.host, raw, expected)


PATHS = [
    ("/", "/"),
    ("", "/"),
    (None, "/"),
    ("/foo/bar", "/foo/bar"),
    ("/foo/", "/foo/"),
    ("/a.b_c-d~e", "/a.b_c-d~e"),
    ("/caf%C3%A9", None),  # decodes outside the allowed set
    ("/a%20b", None),
    ("/%61bc", "/abc"),
    ("/a%2Fb", None),
    ("/a%2fb", None),
    ("/a%zz", None),
    ("/a%", None),
    ("/%ff", None),
    ("foo", None),
    ("/foo;", None),
    ("/foo{", None),
    ("/foo}", None),
    ('/foo"', None),
    ("/foo'", None),
    ("/foo\nbar", None),
    ("/foo\n", None),
    ("/foo\rbar", None),
    ("/$host", None),
    ("/foo bar", None),
    ("/foo#x", None),
    ("/foo?x", None),
    ("/foo//bar", None),
    ("/foo/./bar", None),
    ("/foo/../bar", None),
    ("/foo/..", None),
    ("/foo/.", None),
    ("/%2e%2e/etc", None),
    ("/.well-known/acme", "/.well-known/acme"),
    ("/" + "a" * 1100, None),
    ("/(.*)", None),
    (42, None),
]


@pytest.mark.parametrize(("raw", "expected"), PATHS, ids=repr)
def test_path(raw: object, expected: str | None) -> None:
    check(lambda value, field: validate.path(value, "Prefix", field), raw, expected)


@pytest.mark.parametrize(
    ("func", "raw", "ok"),
    [
        (validate.service_name, "web", True),
        (validate.service_name, "web-1", True),
        (validate.service_name, "1web", False),
        (validate.service_name, "Web", False),
        (validate.service_name, "web.x", False),
        (validate.service_name, "w" * 64, False),
        (validate.port_name, "http", True),
        (validate.port_name, "h2c-alt", True),
        (validate.port_name, "80", False),
        (validate.port_name, "http--x", False),
        (validate.port_name, "a" * 16, False),
        (validate.port_name, "HTTP", False),
        (validate.port_number, 80, True),
        (validate.port_number, 65535, True),
        (validate.port_number, 0, False),
        (validate.port_number, 65536, False),
        (validate.port_number, True, False),
        (validate.port_number, "80", False),
        (validate.secret_name, "foo-tls", True),
        (validate.secret_name, "foo.tls", True),
        (validate.secret_name, "../etc/passwd", False),
        (validate.secret_name, "Foo", False),
        (validate.namespace, "default", True),
        (validate.namespace, "kube.system", False),
        (validate.object_name, "a.b-c", True),
        (validate.object_name, "a;b", False),
    ],
)
def test_names(func, raw: object, ok: bool) -> None:
    check(func, raw, raw if ok else None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("127.0.0.5", "127.0.0.5"), ("API.example.com.", "api.example.com"), ("::1", "::1"), ("a b", None),
     ("x;y", None), ("", None)],
)  # fmt: skip
def test_external_name(raw: str, expected: str | None) -> None:
    check(validate.external_name, raw, expected)


def test_quote() -> None:
    assert nginx_quote("/foo") == '"/foo"'
    assert nginx_quote('a"b\\c') == '"a\\"b\\\\c"'
    for bad in ("a\nb", "a\rb", "a\x00b", "a\x7fb", "a\tb"):
        with pytest.raises(InvalidValue):
            nginx_quote(bad)


SPECS = [
    ({"rules": [{"host": "foo.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
      "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}, None),
    ({"defaultBackend": {"service": {"name": "web", "port": {"name": "http"}}}}, None),
    ({}, "needs rules or a defaultBackend"),
    ({"rules": "x"}, "spec.rules: must be a list"),
    ({"rules": [{"host": "foo.com", "http": {"paths": [{"path": "/", "pathType": "Regex",
      "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}, "pathType"),
    ({"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
      "backend": {"service": {"name": "web", "port": {"number": 80, "name": "http"}}}}]}}]}, "exactly one"),
    ({"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
      "backend": {"service": {"name": "web"}}}]}}]}, "exactly one"),
    ({"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {}}]}}]}, "service is required"),
    ({"rules": [{"host": "foo.com"}], "tls": [{"hosts": ["foo.com"], "secretName": "a/b"}]}, "secretName"),
    ({"rules": [{"host": "foo.com"}], "tls": [{"hosts": ["foo.com;"], "secretName": "s"}]}, "spec.tls[0].hosts[0]"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "error"), SPECS)
def test_ingress_spec(spec: dict, error: str | None) -> None:
    if error is None:
        validate.ingress_spec(spec)
    else:
        with pytest.raises(InvalidValue, match=error.replace("[", r"\[").replace("]", r"\]")):
            validate.ingress_spec(spec)


def test_resource_backend_is_skipped_not_rejected() -> None:
    spec = validate.ingress_spec(
        {
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/r",
                                "pathType": "Prefix",
                                "backend": {"resource": {"kind": "Bucket", "name": "b"}},
                            }
                        ]
                    }
                }
            ]
        }
    )
    assert spec.rules[0].paths[0].backend is None


def test_ns_name_flag() -> None:
    assert validate.ns_name("kube-system/portolan", "--x") == ("kube-system", "portolan")
    for bad in ("nons", "a/b/c", "/b", "A/b"):
        with pytest.raises(InvalidValue):
            validate.ns_name(bad, "--x")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("2001:DB8::1", "2001:db8::1"), ("fe80::1%eth0", None),
     ("fe80::1%;}evil", None), ("127.0.0.1 ", None), ("localhost", None), ("", None), (None, None)],
)  # fmt: skip
def test_ip(raw: object, expected: str | None) -> None:
    check(validate.ip, raw, expected)
