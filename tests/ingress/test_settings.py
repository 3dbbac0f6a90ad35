"""ConfigMap settings: typed parsing, defaults kept on bad values (table)."""

from __future__ import annotations

import pytest

from ingress.settings import DEFAULT_LOG_FORMAT, NginxSettings, parse_settings


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
        ({"keep-alive": "30"}, "keep_alive", 30, 0),
        ({"keep-alive-requests": "50"}, "keep_alive_requests", 50, 0),
        ({"keep-alive-requests": "0"}, "keep_alive_requests", 1000, 1),
        ({"proxy-connect-timeout": "10"}, "proxy_connect_timeout", 10, 0),
        ({"proxy-send-timeout": "x"}, "proxy_send_timeout", 60, 1),
        ({"upstream-keepalive-connections": "64"}, "upstream_keepalive_connections", 64, 0),
        ({"ssl-protocols": "TLSv1.3"}, "ssl_protocols", ("TLSv1.3",), 0),
        ({"ssl-protocols": "TLSv1.2  TLSv1.3 TLSv1.2"}, "ssl_protocols", ("TLSv1.2", "TLSv1.3"), 0),
        ({"ssl-protocols": "SSLv3"}, "ssl_protocols", ("TLSv1.2", "TLSv1.3"), 1),
        ({"ssl-protocols": "TLSv1.3; ssl_engine x"}, "ssl_protocols", ("TLSv1.2", "TLSv1.3"), 1),
        # worker-shutdown-timeout: an nginx time, as ingress-nginx passes it through (default "240s")
        ({}, "worker_shutdown_timeout", 240, 0),
        ({"worker-shutdown-timeout": "240s"}, "worker_shutdown_timeout", 240, 0),
        ({"worker-shutdown-timeout": "10"}, "worker_shutdown_timeout", 10, 0),
        ({"worker-shutdown-timeout": "5m"}, "worker_shutdown_timeout", 300, 0),
        ({"worker-shutdown-timeout": "1m30s"}, "worker_shutdown_timeout", 90, 0),
        ({"worker-shutdown-timeout": "1m30"}, "worker_shutdown_timeout", 90, 0),  # nginx: a last bare number is seconds
        ({"worker-shutdown-timeout": "0s"}, "worker_shutdown_timeout", 0, 0),
        ({"worker-shutdown-timeout": "30s1m"}, "worker_shutdown_timeout", 240, 1),  # nginx refuses it too
        ({"worker-shutdown-timeout": "1m1m"}, "worker_shutdown_timeout", 240, 1),
        ({"worker-shutdown-timeout": "500ms"}, "worker_shutdown_timeout", 240, 1),  # whole seconds only
        ({"worker-shutdown-timeout": "2d"}, "worker_shutdown_timeout", 240, 1),
        ({"worker-shutdown-timeout": "10 s"}, "worker_shutdown_timeout", 240, 1),
        ({"worker-shutdown-timeout": "\u0661\u0660s"}, "worker_shutdown_timeout", 240, 1),
        ({"worker-shutdown-timeout": "s"}, "worker_shutdown_timeout", 240, 1),
        ({"hsts": "false"}, "hsts", False, 0),
        ({"hsts-max-age": "600"}, "hsts_max_age", 600, 0),
        ({"hsts-max-age": "600\n"}, "hsts_max_age", 600, 0),  # surrounding whitespace is trimmed
        ({"hsts-include-subdomains": "false"}, "hsts_include_subdomains", False, 0),
        ({"use-forwarded-headers": "true"}, "use_forwarded_headers", True, 0),
        ({"allow-snippet-annotations": "true"}, "allow_snippet_annotations", True, 0),
        ({"allow-snippet-annotations": "yes please"}, "allow_snippet_annotations", False, 1),
        ({"server-tokens": "true"}, "server_tokens", True, 0),
        (
            {"log-format-upstream": "$remote_addr [$time_local] $status"},
            "log_format_upstream",
            "$remote_addr [$time_local] $status",
            0,
        ),
        ({"log-format-upstream": "$remote_addr'; ssl_engine x; '"}, "log_format_upstream", DEFAULT_LOG_FORMAT, 1),
        ({"log-format-upstream": '{"status": $status}'}, "log_format_upstream", '{"status": $status}', 0),
        ({"log-format-upstream": "$status\\"}, "log_format_upstream", DEFAULT_LOG_FORMAT, 1),
        ({"log-format-escape-json": "true"}, "log_format_escape_json", True, 0),
        ({"log-format-escape-none": "nope"}, "log_format_escape_none", False, 1),
        ({"log-format-upstream": "${status}"}, "log_format_upstream", DEFAULT_LOG_FORMAT, 1),
        ({"log-format-upstream": "$status # x"}, "log_format_upstream", DEFAULT_LOG_FORMAT, 1),
        ({"log-format-upstream": "$status\n$x"}, "log_format_upstream", DEFAULT_LOG_FORMAT, 1),
        # the access and error logs: ingress-nginx's keys and defaults (the path's default is ours)
        ({}, "disable_access_log", False, 0),
        ({"disable-access-log": "true"}, "disable_access_log", True, 0),
        ({"disable-access-log": "off please"}, "disable_access_log", False, 1),
        ({}, "enable_access_log_for_default_backend", False, 0),
        ({"enable-access-log-for-default-backend": "true"}, "enable_access_log_for_default_backend", True, 0),
        ({"enable-access-log-for-default-backend": "2"}, "enable_access_log_for_default_backend", False, 1),
        ({}, "error_log_level", "notice", 0),
        ({"error-log-level": "warn"}, "error_log_level", "warn", 0),
        ({"error-log-level": " debug\n"}, "error_log_level", "debug", 0),
        ({"error-log-level": "warning"}, "error_log_level", "notice", 1),  # nginx says warn
        # Portolan's own: how many poolable hosts before they share pooled server blocks
        ({}, "host_pool_threshold", 100, 0),
        ({"host-pool-threshold": "0"}, "host_pool_threshold", 0, 0),
        ({"host-pool-threshold": "-1"}, "host_pool_threshold", 100, 1),
        ({"error-log-level": "error; x"}, "error_log_level", "notice", 1),
        ({}, "access_log_path", "", 0),  # logs/access.log under --config-dir
        ({"access-log-path": "/var/log/nginx/access.log"}, "access_log_path", "/var/log/nginx/access.log", 0),
        ({"access-log-path": "/dev/stdout"}, "access_log_path", "/dev/stdout", 0),
        ({"access-log-path": "/l/.hidden/a-b_c+1@x=y,z~.log"}, "access_log_path", "/l/.hidden/a-b_c+1@x=y,z~.log", 0),
        ({"access-log-path": "access.log"}, "access_log_path", "", 1),  # relative
        ({"access-log-path": "/var/log/$host.log"}, "access_log_path", "", 1),  # a variable: a file per request
        ({"access-log-path": "/var/log/../../etc/passwd"}, "access_log_path", "", 1),
        ({"access-log-path": "/var/./log"}, "access_log_path", "", 1),
        ({"access-log-path": "/var/log/a b.log"}, "access_log_path", "", 1),
        ({"access-log-path": "/var/log/a.log;"}, "access_log_path", "", 1),
        ({"access-log-path": "/var/log/a.log\"x"}, "access_log_path", "", 1),
        ({"access-log-path": "syslog:server=127.0.0.1"}, "access_log_path", "", 1),
        ({"access-log-path": "/"}, "access_log_path", "", 1),
        ({"access-log-path": "/var/log/\u00e9.log"}, "access_log_path", "", 1),
        ({"access-log-path": "/" + "a" * 1024}, "access_log_path", "", 1),
        ({}, "access_log_params", "", 0),
        ({"access-log-params": ""}, "access_log_params", "", 0),
        ({"access-log-params": "buffer=16k flush=5m"}, "access_log_params", "buffer=16k flush=300s", 0),
        ({"access-log-params": "buffer=16k, gzip, flush=1m"}, "access_log_params", "buffer=16k gzip=1 flush=60s", 0),
        ({"access-log-params": "flush=1m30s gzip=9 buffer=1M"}, "access_log_params", "buffer=1m gzip=9 flush=90s", 0),
        ({"access-log-params": "buffer=65536"}, "access_log_params", "buffer=65536", 0),
        ({"access-log-params": "gzip"}, "access_log_params", "gzip=1", 0),
        ({"access-log-params": "buffer=64m"}, "access_log_params", "buffer=64m", 0),
        ({"access-log-params": "buffer=65m"}, "access_log_params", "", 1),
        ({"access-log-params": "buffer=0"}, "access_log_params", "", 1),
        ({"access-log-params": "buffer="}, "access_log_params", "", 1),
        ({"access-log-params": "buffer=1g"}, "access_log_params", "", 1),
        ({"access-log-params": "buffer=\u0661k"}, "access_log_params", "", 1),
        ({"access-log-params": "gzip=0"}, "access_log_params", "", 1),
        ({"access-log-params": "gzip=10"}, "access_log_params", "", 1),
        ({"access-log-params": "flush=5m"}, "access_log_params", "", 1),  # nginx: flush needs a buffer
        ({"access-log-params": "buffer=16k flush=500ms"}, "access_log_params", "", 1),
        ({"access-log-params": "buffer=16k flush=0s"}, "access_log_params", "", 1),
        ({"access-log-params": "buffer=16k buffer=32k"}, "access_log_params", "", 1),
        ({"access-log-params": "buffer=16k if=$loggable"}, "access_log_params", "", 1),
        ({"access-log-params": "buffer=16k;"}, "access_log_params", "", 1),
        ({"access-log-params": "buffer=16k; error_log x"}, "access_log_params", "", 1),
        ({"access-log-params": "buffer"}, "access_log_params", "", 1),
    ],
)
def test_parse(data: dict[str, str], field: str, value: object, problems: int) -> None:
    settings, found = parse_settings(data)
    assert getattr(settings, field) == value
    assert len(found) == problems


def test_defaults_follow_ingress_nginx() -> None:
    s = NginxSettings()
    assert (s.ssl_redirect, s.http_redirect_code, s.proxy_connect_timeout, s.proxy_body_size) == (True, 308, 5, "1m")
    assert (s.proxy_read_timeout, s.proxy_send_timeout, s.keep_alive, s.keep_alive_requests) == (60, 60, 75, 1000)
    assert (s.upstream_keepalive_connections, s.ssl_protocols) == (320, ("TLSv1.2", "TLSv1.3"))
    assert (s.hsts, s.hsts_max_age, s.hsts_include_subdomains) == (True, 31536000, True)
    assert (s.use_forwarded_headers, s.allow_snippet_annotations, s.server_tokens) == (False, False, False)
    assert (s.disable_access_log, s.access_log_params, s.enable_access_log_for_default_backend) == (False, "", False)
    assert s.error_log_level == "notice"


def test_non_ascii_digits_are_refused() -> None:
    # "\d" and str.isdigit() take any script's digits; nginx does not, and the whole config would fail.
    settings, notes = parse_settings({"proxy-body-size": "\u0668m", "worker-processes": "\u0668"})
    assert (settings.proxy_body_size, settings.worker_processes) == ("1m", "auto")
    assert len(notes) == 2
