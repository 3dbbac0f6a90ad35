"""ConfigMap settings: typed parsing, defaults kept on bad values (table)."""

from __future__ import annotations

import pytest

from ingress.settings import NginxSettings, parse_settings


@pytest.mark.parametrize(
    ("data", "field", "value", "problems"),
    [
        ({}, "ssl_redirect", True, 0),
        ({"ssl-redirect": "false"}, "ssl_redirect", False, 0),
        ({"ssl-redirect": "maybe"}, "ssl_redirect", True, 1),
        ({"http-redirect-code": "301"}, "http_redirect_code", 301, 0),
        ({"http-redirect-code": "200"}, "http_redirect_code", 308, 1),
        ({"proxy-read-timeout": "120"}, "proxy_read_timeout", 120, 0),
        ({"proxy-read-timeout": "120s"}, "proxy_read_timeout", 120, 0),
        ({"proxy-read-timeout": "1; evil"}, "proxy_read_timeout", 60, 1),
        ({"proxy-body-size": "8m"}, "proxy_body_size", "8m", 0),
        ({"proxy-body-size": "8m;"}, "proxy_body_size", "1m", 1),
        ({"worker-processes": "2"}, "worker_processes", "2", 0),
        ({"worker-processes": "auto; user root"}, "worker_processes", "auto", 1),
        ({"upstream-keepalive-connections": "0"}, "upstream_keepalive_connections", 0, 0),
        ({"no-such-key": "1"}, "ssl_redirect", True, 1),
    ],
)
def test_parse(data: dict[str, str], field: str, value: object, problems: int) -> None:
    settings, found = parse_settings(data)
    assert getattr(settings, field) == value
    assert len(found) == problems


def test_defaults_follow_ingress_nginx() -> None:
    s = NginxSettings()
    assert (s.ssl_redirect, s.http_redirect_code, s.proxy_connect_timeout, s.proxy_body_size) == (True, 308, 5, "1m")
