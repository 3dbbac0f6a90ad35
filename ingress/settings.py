"""The controller ConfigMap (``--configmap NS/NAME``): typed nginx settings with defaults.

Keys and defaults follow ingress-nginx's ConfigMap where we implement the same knob. Each
value is parsed into a typed field; an invalid value keeps the default and is reported, never
passed through (a ConfigMap value is as untrusted as an annotation).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from ingress.features import external_auth
from ingress.validate import nginx_size, path

# log-format-upstream: printable ASCII; double quotes and braces (ingress-nginx's default and
# JSON formats have them) are escaped or inert inside the quoted token the template writes;
# ";", "#", "'" and backslash stay out all the same. "$" is meant here: it names variables,
# each a plain variable name (no "${", which nginx would also read).
_LOG_FORMAT_RE = re.compile(r'^(?:[A-Za-z0-9 \[\]()<>:,./_|*+=@!?%&^~`"{}-]|\$[A-Za-z_][A-Za-z0-9_]*)+$')
# ingress-nginx's default log-format-upstream, field for field: log parsers and dashboards
# built on it keep working. $proxy_upstream_name, $proxy_alternative_upstream_name and $req_id
# are defined as ingress-nginx defines them (templates/http.j2).
DEFAULT_LOG_FORMAT = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
    '"$http_user_agent" $request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] '
    "$upstream_addr $upstream_response_length $upstream_response_time $upstream_status $req_id"
)
SSL_PROTOCOLS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


@dataclass(frozen=True, slots=True)
class NginxSettings:
    """The nginx knobs of the controller ConfigMap, typed, with ingress-nginx's defaults."""

    ssl_redirect: bool = True
    http_redirect_code: int = 308
    hsts: bool = True
    hsts_max_age: int = 31536000
    hsts_include_subdomains: bool = True
    use_http2: bool = True
    proxy_connect_timeout: int = 5
    proxy_read_timeout: int = 60
    proxy_send_timeout: int = 60
    proxy_body_size: str = "1m"
    proxy_buffering: bool = False
    upstream_keepalive_connections: int = 320
    upstream_keepalive_timeout: int = 60
    keep_alive: int = 75
    worker_processes: str = "auto"
    worker_connections: int = 16384
    worker_shutdown_timeout: int = 240
    keep_alive_requests: int = 1000
    log_format_upstream: str = DEFAULT_LOG_FORMAT
    log_format_escape_json: bool = False  # escape=json on the log format (ingress-nginx's key)
    log_format_escape_none: bool = False  # escape=none (json wins when both are set, as there)
    ssl_protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    use_forwarded_headers: bool = False
    allow_snippet_annotations: bool = False
    server_tokens: bool = False
    load_balance: str = "round_robin"  # or "ewma"; the load-balance annotation overrides it per Ingress
    # The live data plane's shared memory (lua-shared-dicts): routes and endpoints, certificates.
    lua_data_dict: str = "64m"
    lua_certs_dict: str = "64m"
    # Logs. ingress-nginx's access-log-path default is /var/log/nginx/access.log; ours ("")
    # is logs/access.log under --config-dir, as every file nginx writes is there.
    disable_access_log: bool = False
    access_log_path: str = ""
    access_log_params: str = ""  # canonical: "buffer=16k gzip=1 flush=5s", each part optional
    enable_access_log_for_default_backend: bool = False
    error_log_level: str = "notice"
    # Portolan's own (ingress/pooling.py): from this many poolable hosts on, they share pooled
    # server blocks whose paths the balancer matches; below it each keeps its own block.
    host_pool_threshold: int = 100
    # External auth for every location whose Ingress sets no auth-url nor enable-global-auth
    # "false" (ingress/features/external_auth.py): (URL, its host) as nginx values; "" unset.
    global_auth_url: tuple[str, str] = ("", "")
    global_auth_method: str = ""
    global_auth_signin: str = ""
    global_auth_signin_redirect_param: str = "rd"
    global_auth_response_headers: tuple[str, ...] = ()
    global_auth_request_redirect: str = ""
    global_auth_always_set_cookie: bool = False
    # Paths global auth does not guard (prefixes): ACME HTTP-01 challenges must reach cert-manager's solver.
    no_auth_locations: tuple[str, ...] = ("/.well-known/acme-challenge",)


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise ValueError("not a boolean")


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        stripped = text.strip().removesuffix("s")  # "60s" is common for timeouts
        if not stripped.isdigit():
            raise ValueError("not a whole number")
        value = int(stripped)
        if not lo <= value <= hi:
            raise ValueError(f"not in {lo}..{hi}")
        return value

    return parse


# An nginx time in whole seconds, as ingress-nginx passes worker-shutdown-timeout through
# ("240s", its default): numbers with a unit, the units in decreasing order, each once; a last
# number without one is seconds ("1m30" is 90, as nginx reads it). ms, w, M and y are left out.
_TIME_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_TIME_RE = re.compile(r"(?:[0-9]{1,9}[dhms])*[0-9]{0,9}")
_TIME_PART_RE = re.compile(r"([0-9]+)([dhms]?)")


def _seconds(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = text.strip()
        if not value or not _TIME_RE.fullmatch(value):
            raise ValueError("not a time like 240s, 5m or 1m30s")
        parts = [(int(n), unit or "s") for n, unit in _TIME_PART_RE.findall(value)]
        factors = [_TIME_UNITS[unit] for _, unit in parts]
        if factors != sorted(set(factors), reverse=True):
            raise ValueError("not a time with its units in decreasing order, each once")
        seconds = sum(n * _TIME_UNITS[unit] for n, unit in parts)
        if not lo <= seconds <= hi:
            raise ValueError(f"not in {lo}..{hi} seconds")
        return seconds

    return parse


def _choice(*allowed: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text.strip())
        if value not in allowed:
            raise ValueError(f"not one of {allowed}")
        return value

    return parse


def _size(text: str) -> str:
    return nginx_size(text.strip())


def _workers(text: str) -> str:
    value = text.strip()
    # isdigit() alone takes any script's digits, which nginx would refuse: the whole config would fail.
    if value == "auto" or (value.isascii() and value.isdigit() and 1 <= int(value) <= 1024):
        return value
    raise ValueError("not 'auto' or a number of workers")


def _log_format(text: str) -> str:
    value = text.strip()
    if not value or len(value) > 4096 or not _LOG_FORMAT_RE.fullmatch(value):
        raise ValueError("not a log format of printable characters and $variables (no ', ;, # or backslash)")
    return value


def _load_balance(text: str) -> str:
    value = text.strip()
    if value not in ("round_robin", "ewma"):
        raise ValueError("not round_robin or ewma")
    return value


# access-log-path: an absolute path of plain characters. No "$" (nginx would take it for a
# variable and open the file per request), no whitespace, quotes or ";", no "." or ".." parts.
_LOG_PATH_RE = re.compile(r"(?:/[A-Za-z0-9._+@=,~-]+)+")
_LOG_PATH_DOTS_RE = re.compile(r"/\.\.?(?:/|$)")


def _log_path(text: str) -> str:
    value = text.strip()
    if len(value) > 1024 or not _LOG_PATH_RE.fullmatch(value) or _LOG_PATH_DOTS_RE.search(value):
        raise ValueError("not an absolute path of letters, digits and . _ + @ = , ~ - (no $, no . or .. parts)")
    return value


_BUFFER_RE = re.compile(r"([0-9]{1,9})([km]?)")
_MAX_LOG_BUFFER = 64 << 20


def _log_buffer(value: str) -> str:
    found = _BUFFER_RE.fullmatch(value.lower())
    size = int(found[1]) << {"": 0, "k": 10, "m": 20}[found[2]] if found else 0
    if not 1 <= size <= _MAX_LOG_BUFFER:
        raise ValueError(f"not a buffer= from 1 to 64m ({value!r})")
    return f"{int(found[1])}{found[2]}" if found else ""


def _log_gzip(value: str | None) -> str:
    if value is None:
        return "1"  # nginx's default level
    if len(value) != 1 or value not in "123456789":
        raise ValueError(f"not a gzip= level from 1 to 9 ({value!r})")
    return value


def _access_log_params(text: str) -> str:
    """``buffer=16k flush=5m`` (ingress-nginx passes the text through to access_log; its docs
    separate the parts with commas too): buffer=SIZE, gzip[=LEVEL] and flush=TIME, each at most
    once, rendered in a canonical form. Anything else (``if=``, unknown words) is refused."""
    parts: dict[str, str] = {}
    for word in text.replace(",", " ").split():
        name, sep, value = word.partition("=")
        if name in parts:
            raise ValueError(f"not buffer, gzip and flush each once ({name} twice)")
        if name == "buffer" and sep:
            parts[name] = _log_buffer(value)
        elif name == "gzip":
            parts[name] = _log_gzip(value if sep else None)
        elif name == "flush" and sep:
            parts[name] = f"{_seconds(1, 86400)(value)}s"
        else:
            raise ValueError(f"not made of buffer=SIZE, gzip[=LEVEL] and flush=TIME ({word!r})")
    if "flush" in parts and "buffer" not in parts and "gzip" not in parts:
        raise ValueError("a flush= without buffer= or gzip (nginx refuses it)")
    return " ".join(f"{name}={parts[name]}" for name in ("buffer", "gzip", "flush") if name in parts)


ERROR_LOG_LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")


def _error_log_level(text: str) -> str:
    value = text.strip()
    if value not in ERROR_LOG_LEVELS:
        raise ValueError(f"not one of {', '.join(ERROR_LOG_LEVELS)}")
    return value


# ingress-nginx's names for the dicts that hold the same data as ours.
_DICTS = {"configuration_data": "lua_data_dict", "certificate_data": "lua_certs_dict"}


def _lua_shared_dicts(text: str) -> dict[str, str]:
    """``configuration_data: 100, certificate_data: 50m``: sizes in megabytes unless suffixed
    k or m (ingress-nginx's format), for the dicts we have; others are refused."""
    found: dict[str, str] = {}
    for item in text.split(","):
        name, sep, size = (part.strip() for part in item.partition(":"))
        if not sep or name not in _DICTS:
            raise ValueError(f"not a list of {' / '.join(_DICTS)}: SIZE")
        low = size.lower()
        unit = low[-1] if low[-1:] in ("k", "m") else "m"
        number = low[:-1] if low[-1:] in ("k", "m") else low
        kib = int(number) * (1024 if unit == "m" else 1) if number.isascii() and number.isdigit() else 0
        if not 128 <= kib <= (1 << 22):  # nginx refuses tiny zones; 4 GiB is plenty
            raise ValueError(f"{size!r} is not a size from 128k to 4096m")
        found[_DICTS[name]] = f"{int(number)}{unit}"
    return found


def _ssl_protocols(text: str) -> tuple[str, ...]:
    found = tuple(dict.fromkeys(text.split()))
    if not found or any(p not in SSL_PROTOCOLS for p in found):
        raise ValueError(f"not a list of {', '.join(SSL_PROTOCOLS)}")
    return found


def _paths(text: str) -> tuple[str, ...]:
    """A comma-separated list of plain paths."""
    return tuple(path(p.strip(), "Prefix", "path") for p in text.split(",") if p.strip())


def _global_auth(annotation: str, text: str) -> Any:
    """global-auth-*: the value of the auth-* annotation of the same name."""
    return external_auth.parse_field(annotation, text.strip())


# ConfigMap key -> (field name, parser)
KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "ssl-redirect": ("ssl_redirect", _bool),
    "http-redirect-code": ("http_redirect_code", _choice(301, 302, 307, 308)),
    "hsts": ("hsts", _bool),
    "hsts-max-age": ("hsts_max_age", _int_range(0, 2**31 - 1)),
    "hsts-include-subdomains": ("hsts_include_subdomains", _bool),
    "use-http2": ("use_http2", _bool),
    "proxy-connect-timeout": ("proxy_connect_timeout", _int_range(1, 3600)),
    "proxy-read-timeout": ("proxy_read_timeout", _int_range(1, 86400)),
    "proxy-send-timeout": ("proxy_send_timeout", _int_range(1, 86400)),
    "proxy-body-size": ("proxy_body_size", _size),
    "proxy-buffering": ("proxy_buffering", _bool),
    "upstream-keepalive-connections": ("upstream_keepalive_connections", _int_range(0, 100000)),
    "upstream-keepalive-timeout": ("upstream_keepalive_timeout", _int_range(1, 86400)),
    "keep-alive": ("keep_alive", _int_range(0, 86400)),
    "worker-processes": ("worker_processes", _workers),
    "max-worker-connections": ("worker_connections", _int_range(64, 1048576)),
    "worker-shutdown-timeout": ("worker_shutdown_timeout", _seconds(0, 86400)),
    "keep-alive-requests": ("keep_alive_requests", _int_range(1, 10_000_000)),
    "log-format-upstream": ("log_format_upstream", _log_format),
    "log-format-escape-json": ("log_format_escape_json", _bool),
    "log-format-escape-none": ("log_format_escape_none", _bool),
    "ssl-protocols": ("ssl_protocols", _ssl_protocols),
    "use-forwarded-headers": ("use_forwarded_headers", _bool),
    "allow-snippet-annotations": ("allow_snippet_annotations", _bool),
    "server-tokens": ("server_tokens", _bool),
    "load-balance": ("load_balance", _load_balance),
    "lua-shared-dicts": ("lua_shared_dicts", _lua_shared_dicts),  # sets several fields
    "disable-access-log": ("disable_access_log", _bool),
    "access-log-path": ("access_log_path", _log_path),
    "access-log-params": ("access_log_params", _access_log_params),
    "enable-access-log-for-default-backend": ("enable_access_log_for_default_backend", _bool),
    "error-log-level": ("error_log_level", _error_log_level),
    "host-pool-threshold": ("host_pool_threshold", _int_range(0, 10_000_000)),
    "global-auth-url": ("global_auth_url", lambda text: _global_auth("auth-url", text)),
    "global-auth-method": ("global_auth_method", lambda text: _global_auth("auth-method", text)),
    "global-auth-signin": ("global_auth_signin", lambda text: _global_auth("auth-signin", text)),
    "global-auth-signin-redirect-param": ("global_auth_signin_redirect_param",
                                          lambda text: _global_auth("auth-signin-redirect-param", text)),
    "global-auth-response-headers": ("global_auth_response_headers",
                                     lambda text: _global_auth("auth-response-headers", text)),
    "global-auth-request-redirect": ("global_auth_request_redirect",
                                     lambda text: _global_auth("auth-request-redirect", text)),
    "global-auth-always-set-cookie": ("global_auth_always_set_cookie", _bool),
    "no-auth-locations": ("no_auth_locations", _paths),
}

assert {name for name, _ in KEYS.values()} - {"lua_shared_dicts"} <= {f.name for f in fields(NginxSettings)}


def parse_settings(data: Mapping[str, str] | None) -> tuple[NginxSettings, list[str]]:
    """Settings from ConfigMap data, and one message per key that was ignored."""
    settings = NginxSettings()
    problems: list[str] = []
    if not data:
        return settings, problems
    changes: dict[str, Any] = {}
    for key in sorted(data):
        entry = KEYS.get(key)
        if entry is None:
            problems.append(f"configmap key {key!r} is not supported; ignored")
            continue
        name, parse = entry
        try:
            if name == "lua_shared_dicts":
                changes.update(parse(data[key]))
                continue
            changes[name] = parse(data[key])
        except ValueError as exc:
            problems.append(f"configmap key {key!r}: {data[key]!r} is {exc}; using the default")
    return replace(settings, **changes), problems
