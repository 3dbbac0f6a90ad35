"""ingress-nginx's ``nginx.ingress.kubernetes.io/*`` annotations as typed values.

Each annotation we implement declares a parser (bool, bounded int, size, enum, CIDR list,
URL, path, regex path, header list ...). A parser either returns a value that can only
hold allow-listed characters or raises InvalidValue, which rejects the whole Ingress through
the model's rejection path (log, Event, metric): a half-applied Ingress (say, its
allow-list dropped) would be worse than one left out.

Nothing here is a block-list: ingress-nginx's word block-lists were bypassed again and again
(CVE-2021-25746, CVE-2023-5043/5044, CVE-2024-7646). The characters that end or open an
nginx token (``;`` ``{`` ``}`` quotes, ``#``, backslash, whitespace, control characters)
and ``$`` (variable expansion) are simply never in an allow-list, except ``$N`` capture
references in rewrite-target, nginx's own variables in upstream-hash-by, ``$`` as an end anchor
in regex paths and canary header patterns, and braces in those regexes (for ``{n}`` quantifiers;
a regex is always rendered quoted, where braces are plain characters).

Snippet annotations are raw nginx text by definition (CVE-2021-25742): they are ignored unless
the ConfigMap sets ``allow-snippet-annotations: "true"``, which makes anyone who can write an
Ingress root-equivalent on the controller.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from ingress.validate import MAX_PATH, InvalidValue, host, nginx_size, path, regex

PREFIX = "nginx.ingress.kubernetes.io/"

_HEADER_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_METHOD_RE = re.compile(r"^[A-Z]{1,16}$")
# A cookie name lands in a regex (matched against the Cookie header): no regex metacharacters.
_COOKIE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# rewrite-target: a path whose pieces may be $1..$9 (capture groups of the regex path).
_TARGET_RE = re.compile(r"^(?:[A-Za-z0-9._~/=&-]|\$[1-9])*$")
_URL_PATH_RE = re.compile(r"^[A-Za-z0-9._~/%=&+-]*$")
# canary-by-header-value: ingress-nginx's "basic characters" (letters, digits, . _ ~ : / -).
_HEADER_VALUE_RE = re.compile(r"^[A-Za-z0-9._~:/-]{1,256}$")
# session-cookie-path: an absolute URL path; no ";" (it would end the cookie attribute).
_COOKIE_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/%=&+-]{0,1023}$")
SNIPPET_MAX = 16384
# upstream-hash-by: an nginx value made of variables ($name or ${name}) and plain characters,
# evaluated per request inside a quoted "set": nothing that ends or opens a token.
_HASH_BY_RE = re.compile(r"^(?:\$[A-Za-z_][A-Za-z0-9_]*|\$\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z0-9._~:/=&,+-])+$")
_VARIABLE_RE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
# ... and only variables nginx has (names are case-insensitive): the request's, the
# connection's and TLS's, and the per-name families. An unknown one would fail nginx -t (and
# cost a bisection to find); our own ($portolan_*) are not for an Ingress to read.
HASH_BY_VARIABLES = frozenset({
    "args", "binary_remote_addr", "connection", "content_length", "content_type", "document_uri", "host",
    "hostname", "https", "is_args", "proxy_protocol_addr", "proxy_protocol_port", "query_string",
    "realip_remote_addr", "realip_remote_port", "remote_addr", "remote_port", "remote_user", "request",
    "request_id", "request_method", "request_uri", "scheme", "server_addr", "server_name", "server_port",
    "server_protocol", "ssl_cipher", "ssl_client_fingerprint", "ssl_client_s_dn", "ssl_client_serial",
    "ssl_client_verify", "ssl_protocol", "ssl_server_name", "ssl_session_id", "uri",
})  # fmt: skip
HASH_BY_FAMILIES = ("arg_", "cookie_", "http_")
LOAD_BALANCERS = ("round_robin", "ewma")


def _bool(text: str) -> bool:
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    raise ValueError("not true or false")


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isascii() or not text.isdigit() or len(text) > 10:
            raise ValueError("not a whole number")
        value = int(text)
        if not lo <= value <= hi:
            raise ValueError(f"not in {lo}..{hi}")
        return value

    return parse


def _seconds(lo: int, hi: int) -> Callable[[str], int]:
    """Timeouts: ingress-nginx takes unitless seconds; "60s" is accepted too."""
    whole = _int(lo, hi)
    return lambda text: whole(text[:-1] if text.endswith("s") else text)


def _enum(*allowed: str, fold: bool = False) -> Callable[[str], str]:
    def parse(text: str) -> str:
        key = text.upper() if fold else text
        if key not in allowed:
            raise ValueError(f"not one of {', '.join(allowed)}")
        return key

    return parse


def _on_off(text: str) -> bool:
    return _enum("on", "off")(text) == "on"


def _redirect_code(text: str) -> int:
    return int(_enum("301", "302", "303", "307", "308")(text))


def _token(item: re.Pattern[str], what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not item.fullmatch(text):
            raise ValueError(f"not a {what}")
        return text

    return parse


def cidrs(text: str) -> tuple[str, ...]:
    """Comma-separated IPs or CIDRs, canonicalised by ipaddress (host bits are cleared)."""
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item or "%" in item:
            raise ValueError(f"{item!r} is not an IP or CIDR")
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP or CIDR") from None
    return tuple(sorted(set(out)))


def _csv(item: re.Pattern[str], what: str) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        parts = tuple(p.strip() for p in text.split(","))
        for p in parts:
            if not item.fullmatch(p):
                raise ValueError(f"{p!r} is not a {what}")
        return parts

    return parse


def url(text: str) -> str:
    """An http(s) URL, rebuilt from its parsed parts so only validated pieces remain."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError("not an http or https URL")
    if parts.username is not None or parts.password is not None or not parts.hostname:
        raise ValueError("not an http or https URL with a host")
    name = parts.hostname
    try:
        netloc = f"[{ipaddress.IPv6Address(name)}]" if ":" in name else str(ipaddress.IPv4Address(name))
    except ValueError:
        netloc = host(name, "url host", wildcard=False)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("bad port") from None
    if port is not None:
        netloc += f":{port}"
    for piece in (parts.path, parts.query):
        if not _URL_PATH_RE.fullmatch(piece):
            raise ValueError("path or query holds characters other than letters, digits and ._~/%=&+-")
    if parts.fragment:
        raise ValueError("has a fragment")
    out = f"{parts.scheme}://{netloc}{parts.path}"
    return out + (f"?{parts.query}" if parts.query else "")


def _origins(text: str) -> tuple[str, ...]:
    """cors-allow-origin: "*" or a comma-separated list of origins (scheme://host[:port])."""
    if text.strip() == "*":
        return ("*",)
    out = []
    for item in text.split(","):
        item = item.strip()
        origin = url(item)
        if urlsplit(origin).path not in ("", "/") or "?" in origin:
            raise ValueError(f"{item!r} is not an origin")
        out.append(origin.rstrip("/"))
    return tuple(out)


def _app_root(text: str) -> str:
    value = path(text, "app-root", "app-root")
    if value == "/" or value != text:
        raise ValueError("must be a plain path other than /")
    return value


def _rewrite_target(text: str) -> str:
    if not text or len(text) > MAX_PATH or not _TARGET_RE.fullmatch(text) or not text.startswith(("/", "$")):
        raise ValueError("must be a path of letters, digits, ._~/=&- and $1..$9 capture references")
    return text


def _vhost(text: str) -> str:
    name, sep, port = text.partition(":")
    value = host(name, "upstream-vhost", wildcard=False)
    if sep:
        if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("bad port")
        value += f":{int(port)}"
    return value


def _pattern(text: str) -> str:
    return regex(text, "canary-by-header-pattern")


def _samesite(text: str) -> str:
    """None, Lax or Strict in any case (ingress-nginx's check), sent in the spelling browsers
    document; lua-resty-cookie would silently drop any other spelling."""
    return {"NONE": "None", "LAX": "Lax", "STRICT": "Strict"}[_enum("NONE", "LAX", "STRICT", fold=True)(text)]


def _cookie_domain(text: str) -> str:
    """session-cookie-domain: a DNS name under the rule-host rules (lower-cased, no IP, no
    wildcard, no port), optionally with the leading dot of RFC 2109 cookies. RFC 6265 browsers
    ignore that dot; it is kept because ingress-nginx sends the value as written."""
    dot = "." if text.startswith(".") else ""
    try:
        return dot + host(text[len(dot) :], "session-cookie-domain", wildcard=False)
    except InvalidValue:
        raise ValueError("not a DNS domain (labels of letters, digits and -, maybe a leading dot; no IP)") from None


def _hash_by(text: str) -> str:
    if len(text) > 256 or not _HASH_BY_RE.fullmatch(text) or "$" not in text:
        raise ValueError("not an nginx variable expression such as $request_uri or $remote_addr$arg_id")
    for name in (found.lower() for found in _VARIABLE_RE.findall(text)):
        family = next((f for f in HASH_BY_FAMILIES if name.startswith(f) and len(name) > len(f)), None)
        if family is None and name not in HASH_BY_VARIABLES:
            raise ValueError(f"${name} is not a variable nginx has (such as $request_uri, $remote_addr, $arg_NAME, "
                             "$http_NAME or $cookie_NAME)")  # fmt: skip
    return text


def _snippet(text: str) -> str:
    # Raw nginx by design; only the size is bounded. Admins opt in (allow-snippet-annotations).
    if len(text) > SNIPPET_MAX or "\x00" in text:
        raise ValueError("too long or holds NUL")
    return text


@dataclass(frozen=True, slots=True)
class Cors:
    """The CORS headers of an Ingress with enable-cors: its cors-* annotations, else ingress-nginx's defaults."""

    origins: tuple[str, ...] = ("*",)
    methods: tuple[str, ...] = ("GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS")
    headers: tuple[str, ...] = ("DNT", "Keep-Alive", "User-Agent", "X-Requested-With", "If-Modified-Since",
                                "Cache-Control", "Content-Type", "Range", "Authorization")  # fmt: skip
    credentials: bool = True
    expose_headers: tuple[str, ...] = ()
    max_age: int = 1728000

    @property
    def origin_regex(self) -> str:
        """Origins (validated: letters, digits, . - : / [ ]) as one anchored regex."""
        return "^(" + "|".join(re.sub(r"([.\[\]])", r"[\1]", o) for o in self.origins) + ")$"


@dataclass(frozen=True, slots=True)
class Annotations:
    """The annotations of one Ingress, typed. None = not set (the ConfigMap's value applies)."""

    rewrite_target: str | None = None
    use_regex: bool = False
    ssl_redirect: bool | None = None
    force_ssl_redirect: bool = False
    backend_protocol: str = "HTTP"
    proxy_body_size: str | None = None
    proxy_connect_timeout: int | None = None
    proxy_read_timeout: int | None = None
    proxy_send_timeout: int | None = None
    proxy_buffering: bool | None = None
    enable_access_log: bool = True  # false: this Ingress's requests are not logged
    allow_source: tuple[str, ...] = ()
    deny_source: tuple[str, ...] = ()
    affinity: str | None = None
    affinity_mode: str = "balanced"  # what the consistent cookie hash does; "persistent" is noted
    session_cookie_name: str = "INGRESSCOOKIE"
    session_cookie_path: str | None = None  # None: the Ingress path
    session_cookie_expires: int | None = None  # seconds
    session_cookie_max_age: int | None = None  # seconds
    session_cookie_samesite: str | None = None
    session_cookie_secure: bool = False  # False: Secure only over HTTPS
    session_cookie_domain: str | None = None  # None: no Domain attribute (the request's host only)
    preserve_trailing_slash: bool = False
    permanent_redirect: str | None = None
    permanent_redirect_code: int = 301
    temporal_redirect: str | None = None
    temporal_redirect_code: int = 302
    app_root: str | None = None
    cors: Cors | None = None
    limit_rps: int = 0
    limit_burst_multiplier: int = 5
    limit_connections: int = 0
    upstream_vhost: str | None = None
    canary: bool = False
    canary_weight: int = 0
    canary_weight_total: int = 100  # canary_weight is out of this many requests
    canary_by_header: str | None = None
    canary_by_header_value: str | None = None
    canary_by_header_pattern: str | None = None
    canary_by_cookie: str | None = None
    load_balance: str | None = None  # None: the ConfigMap's load-balance
    upstream_hash_by: str | None = None  # an nginx variable expression: consistent hashing on its value
    configuration_snippet: str | None = None
    server_snippet: str | None = None
    # The feature groups' values (ingress/features/), one per group set, in the groups' order;
    # resolved against Secrets, ConfigMaps and settings when a host is built (ingress/model.py).
    features: tuple[Any, ...] = ()

    @property
    def regex(self) -> bool:
        """Makes every path of the host a regex location (ingress-nginx: use-regex or rewrite-target)."""
        return self.use_regex or self.rewrite_target is not None


NONE = Annotations()

# annotation (without PREFIX) -> (field, parser). Aliases share a field.
_SIMPLE: dict[str, tuple[str, Callable[[str], Any]]] = {
    "rewrite-target": ("rewrite_target", _rewrite_target),
    "use-regex": ("use_regex", _bool),
    "ssl-redirect": ("ssl_redirect", _bool),
    "force-ssl-redirect": ("force_ssl_redirect", _bool),
    "backend-protocol": ("backend_protocol", _enum("HTTP", "HTTPS", "GRPC", "GRPCS", fold=True)),
    "proxy-body-size": ("proxy_body_size", nginx_size),
    "proxy-connect-timeout": ("proxy_connect_timeout", _seconds(1, 3600)),
    "proxy-read-timeout": ("proxy_read_timeout", _seconds(1, 86400)),
    "proxy-send-timeout": ("proxy_send_timeout", _seconds(1, 86400)),
    "proxy-buffering": ("proxy_buffering", _on_off),
    "enable-access-log": ("enable_access_log", _bool),
    "whitelist-source-range": ("allow_source", cidrs),
    "allowlist-source-range": ("allow_source", cidrs),
    "denylist-source-range": ("deny_source", cidrs),
    "affinity": ("affinity", _enum("cookie")),
    "affinity-mode": ("affinity_mode", _enum("balanced", "persistent")),
    "session-cookie-name": ("session_cookie_name", _token(_COOKIE_RE, "cookie name")),
    "session-cookie-path": ("session_cookie_path", _token(_COOKIE_PATH_RE, "cookie path")),
    "session-cookie-expires": ("session_cookie_expires", _int(0, 2**31 - 1)),
    "session-cookie-max-age": ("session_cookie_max_age", _int(0, 2**31 - 1)),
    "session-cookie-samesite": ("session_cookie_samesite", _samesite),
    "session-cookie-secure": ("session_cookie_secure", _bool),
    "session-cookie-domain": ("session_cookie_domain", _cookie_domain),
    "preserve-trailing-slash": ("preserve_trailing_slash", _bool),
    "permanent-redirect": ("permanent_redirect", url),
    "permanent-redirect-code": ("permanent_redirect_code", _redirect_code),
    "temporal-redirect": ("temporal_redirect", url),
    "temporal-redirect-code": ("temporal_redirect_code", _redirect_code),
    "app-root": ("app_root", _app_root),
    "limit-rps": ("limit_rps", _int(1, 100000)),
    "limit-burst-multiplier": ("limit_burst_multiplier", _int(1, 1000)),
    "limit-connections": ("limit_connections", _int(1, 100000)),
    "upstream-vhost": ("upstream_vhost", _vhost),
    "canary": ("canary", _bool),
    # Bounded by canary-weight-total, checked once both are known (parse).
    "canary-weight": ("canary_weight", _int(0, 2**31 - 1)),
    # Below 100 it counts as 100, as in ingress-nginx (parse).
    "canary-weight-total": ("canary_weight_total", _int(1, 2**31 - 1)),
    "canary-by-header": ("canary_by_header", _token(_HEADER_RE, "header name")),
    "canary-by-header-value": ("canary_by_header_value", _token(_HEADER_VALUE_RE, "header value")),
    "canary-by-header-pattern": ("canary_by_header_pattern", _pattern),
    "canary-by-cookie": ("canary_by_cookie", _token(_COOKIE_RE, "cookie name")),
    "load-balance": ("load_balance", _enum(*LOAD_BALANCERS)),
    "upstream-hash-by": ("upstream_hash_by", _hash_by),
    "configuration-snippet": ("configuration_snippet", _snippet),
    "server-snippet": ("server_snippet", _snippet),
}
_CORS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "cors-allow-origin": ("origins", _origins),
    "cors-allow-methods": ("methods", _csv(_METHOD_RE, "method")),
    "cors-allow-headers": ("headers", _csv(_HEADER_RE, "header name")),
    "cors-allow-credentials": ("credentials", _bool),
    "cors-expose-headers": ("expose_headers", _csv(_HEADER_RE, "header name")),
    "cors-max-age": ("max_age", _int(0, 2**31 - 1)),
}
SUPPORTED = frozenset(_SIMPLE) | frozenset(_CORS) | {"enable-cors"}
SNIPPETS = ("configuration-snippet", "server-snippet")

assert {f for f, _ in _SIMPLE.values()} <= {f.name for f in fields(Annotations)}


def _check_canary_weight(weight: int, total: int) -> None:
    """InvalidValue for a weight above its total. Within it the share is exact: the balancer
    draws a whole number out of the total per request, as ingress-nginx's does."""
    if weight > total:
        raise InvalidValue(f"annotation {PREFIX}canary-weight: {weight} is more than canary-weight-total {total}")


def parse(raw: Mapping[str, str], *, allow_snippets: bool) -> tuple[Annotations, list[str]]:
    """Typed annotations and notes (ignored annotations); InvalidValue on a bad value."""
    from ingress import features  # (its groups parse with this module's parsers)

    values: dict[str, Any] = {}
    cors: dict[str, Any] = {}
    grouped: dict[str, str] = {}
    notes: list[str] = []
    enable_cors = False
    for key in sorted(raw):
        if not key.startswith(PREFIX):
            continue
        name, text = key[len(PREFIX) :], raw[key]
        ignored = _screen(key, name, text, allow_snippets=allow_snippets)
        if ignored is not None:
            notes.append(ignored)
            continue
        if name in features.ANNOTATIONS:
            grouped[name] = text
            continue
        try:
            if name == "enable-cors":
                enable_cors = _bool(text)
            elif name in _CORS:
                field, parser = _CORS[name]
                cors[field] = parser(text)
            else:
                field, parser = _SIMPLE[name]
                values[field] = parser(text)
        except ValueError as exc:  # validate's InvalidValue too: it is a ValueError
            raise InvalidValue(f"annotation {key}: {text[:80]!r} is {exc}") from None
    if enable_cors:
        values["cors"] = Cors(**cors)
    notes += _settle(values)
    found = features.parse(grouped, notes)
    if found:
        values["features"] = found
    return Annotations(**values), notes


def _screen(key: str, name: str, text: str, *, allow_snippets: bool) -> str | None:
    """The note for an annotation that is ignored, None for one to parse; InvalidValue for a
    value that no parser takes."""
    from ingress import features

    if name not in SUPPORTED and name not in features.ANNOTATIONS:
        # Ignored, never rendered: ingress-nginx's other annotations must not cost an
        # Ingress its service. repr: the key is user text too (and goes to the log).
        return f"annotation {key!r} is not supported; ignored"
    snippet = name in SNIPPETS or name in features.SNIPPETS
    if snippet and not allow_snippets:
        return f"annotation {key} ignored: snippets are disabled (allow-snippet-annotations)"
    if not isinstance(text, str):
        raise InvalidValue(f"annotation {key}: not a string")
    if text == "":
        # "" is how manifests and Helm values switch an annotation off: the default applies.
        return f"annotation {key} is empty; ignored"
    # One check ahead of every parser: no parser accepts these, but a clear message helps.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text) and not snippet:
        raise InvalidValue(f"annotation {key}: control character in {text!r}")
    return None


def _settle(values: dict[str, Any]) -> list[str]:
    """What depends on more than one annotation, once all are parsed: the canary total as
    ingress-nginx counts it (``values`` updated), the weight within it, what affinity cannot do
    as ingress-nginx does. The notes on it; InvalidValue for a weight above its total."""
    notes: list[str] = []
    total = values.get("canary_weight_total")
    if total is not None and total < 100:
        # ingress-nginx's balancer takes a total only above 100: weight 5 of a total of 10 is 5%
        # there, not 50%. A migrated Ingress must send the canary what it sent before.
        notes.append(f"annotation {PREFIX}canary-weight-total: {total} counts as 100, as in ingress-nginx "
                     "(a total is used only above 100)")  # fmt: skip
        values["canary_weight_total"] = 100
    _check_canary_weight(values.get("canary_weight", NONE.canary_weight),
                         values.get("canary_weight_total", NONE.canary_weight_total))  # fmt: skip
    if values.get("affinity") == "cookie" and values.get("affinity_mode") == "persistent":
        # ingress-nginx's persistent mode writes the endpoint into the cookie, so sessions never
        # move to a new endpoint; nginx's consistent hash on the cookie is its balanced mode.
        notes.append(f"annotation {PREFIX}affinity-mode: persistent is served as balanced: when endpoints "
                     "are added, about 1 in n sessions moves to a new one")  # fmt: skip
    if values.get("affinity") == "cookie" and "session_cookie_expires" in values:
        # ingress-nginx's Lua writes Expires=<now + N>; nginx alone cannot compute a date per
        # request, so the lifetime goes out as Max-Age, which browsers prefer when given both.
        how = "session-cookie-max-age sets the lifetime" if "session_cookie_max_age" in values else "sent as Max-Age"
        notes.append(f"annotation {PREFIX}session-cookie-expires: no Expires date without Lua; {how}")
    return notes
