"""ExternalAuth: an authentication service asked before each request (auth-url and the rest,
and the ConfigMap's global-auth-*), with nginx's auth_request.

The sub-request goes to an internal location per distinct value (``/_portolan-auth!<id>``: "!"
is in no Exact or Prefix path, so no Ingress path can take the name), with ingress-nginx's
headers: X-Original-URL, X-Original-Method, X-Sent-From, X-Auth-Request-Redirect, X-Real-IP,
X-Forwarded-For, and no body. A 2xx lets the request through (auth-response-headers copied
from the answer to the request sent upstream, its Set-Cookie to the client), a 401 redirects to
auth-signin with ``rd=<the original URL>`` when set, else is returned as 401 like a 403. An auth
service that cannot be reached costs a 500, as in ingress-nginx.

URLs may use the variables oauth2-proxy's documentation uses ($host, $escaped_request_uri, ...),
from an allow-list, and are otherwise plain URLs rebuilt from their parsed parts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ingress.annotations import _hash_by, _snippet, _token, url
from ingress.features import LOCATION, Context, Feature, digest, same_namespace
from ingress.validate import InvalidValue, is_ip, namespace, object_name
from kubewatch import ConfigMap

# Variables a URL may use, and what they are in our configuration. $best_http_host and
# $pass_access_scheme are ingress-nginx's names; $escaped_request_uri is set (escaped by Lua) in
# the sign-in redirect only.
URL_VARIABLES = {
    "host": "host", "http_host": "http_host", "best_http_host": "portolan_host", "scheme": "scheme",
    "pass_access_scheme": "scheme", "request_uri": "request_uri", "uri": "uri", "args": "args",
    "server_port": "server_port", "remote_addr": "remote_addr", "request_method": "request_method",
}  # fmt: skip
SIGNIN_VARIABLES = {**URL_VARIABLES, "escaped_request_uri": "portolan_escaped_uri"}
_VAR_RE = re.compile(r"\$(\{)?([A-Za-z_][A-Za-z0-9_]*)(?(1)\})")
_PLACEHOLDER = "portolanv"
_HEADER_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_METHOD_RE = re.compile(r"^[A-Z]{1,16}$")
_DURATION_RE = re.compile(r"^(?:(?:[1-5][0-9]{2}|any) ){0,10}[0-9]{1,9}[smhd]$")
_PLAIN_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/%=&+-]{0,1023}$")
# A header value for the sub-request (auth-proxy-set-headers): printable, no quote or
# backslash; "$" only as a variable upstream-hash-by would take.
_VALUE_RE = re.compile(r"^[A-Za-z0-9 ._~:/=&,+;()@!*%?#\[\]-]{0,512}$")


def url_template(text: str, variables: Mapping[str, str]) -> tuple[str, str]:
    """(the URL as an nginx value, its host[:port] as one) for an http(s) URL that may use
    ``variables``: each becomes a placeholder, the URL is checked and rebuilt (annotations.url),
    and the placeholders become our variables again."""
    if _PLACEHOLDER in text.lower():
        raise ValueError(f"holds {_PLACEHOLDER!r}")
    names: list[str] = []

    def swap(m: re.Match[str]) -> str:
        name = m.group(2)
        if name not in variables:
            raise ValueError(f"${name} is not one of the variables allowed here ({', '.join(sorted(variables))})")
        names.append(variables[name])
        return f"{_PLACEHOLDER}{len(names) - 1}x"

    plain = _VAR_RE.sub(swap, text)
    if "$" in plain:
        raise ValueError("holds a $ that is not a variable")
    rebuilt = url(plain)
    netloc = rebuilt.split("/", 3)[2]
    back = re.compile(rf"{_PLACEHOLDER}([0-9]+)x")

    def restore(value: str) -> str:
        return back.sub(lambda m: "${" + names[int(m.group(1))] + "}", value)

    return restore(rebuilt), restore(netloc)


def _headers(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    for p in parts:
        if not _HEADER_RE.fullmatch(p):
            raise ValueError(f"{p[:40]!r} is not a header name")
    return parts


def _durations(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(","))
    for p in parts:
        if not _DURATION_RE.fullmatch(p):
            raise ValueError(f"{p[:40]!r} is not [codes] time, such as 200 202 401 5m")
    return parts


def _bool(text: str) -> bool:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    raise ValueError("not true or false")


def _int(lo: int, hi: int) -> Any:
    def parse(text: str) -> int:
        if not text.isascii() or not text.isdigit() or not lo <= int(text) <= hi:
            raise ValueError(f"not a whole number in {lo}..{hi}")
        return int(text)

    return parse


def _request_redirect(text: str) -> str:
    if _PLAIN_PATH_RE.fullmatch(text):
        return text
    return url_template(text, URL_VARIABLES)[0]


def _ref(text: str) -> tuple[str | None, str]:
    ns, sep, name = text.rpartition("/")
    return (namespace(ns, "namespace") if sep else None), object_name(name, "name")


@dataclass(frozen=True, slots=True)
class ExternalAuth:
    """An auth service in front of a location; nginx values where rendered (see url_template)."""

    group: ClassVar[str] = "external_auth"
    url: str = ""  # "" with global_auth False: enable-global-auth "false" alone
    host: str = ""  # the Host header of the sub-request: the URL's
    method: str | None = None
    signin: str | None = None
    redirect_param: str = "rd"
    response_headers: tuple[str, ...] = ()
    request_redirect: str | None = None
    cache_key: str | None = None
    cache_duration: tuple[str, ...] = ("200 202 401 5m",)
    always_set_cookie: bool = False
    keepalive: int = 0
    keepalive_requests: int = 1000
    keepalive_timeout: int = 60
    keepalive_share_vars: bool = False
    proxy_headers_ref: tuple[str | None, str] | None = None
    proxy_headers: tuple[tuple[str, str], ...] = ()  # resolved from the ConfigMap
    global_auth: bool = True  # enable-global-auth
    exempt: tuple[str, ...] = ()  # global auth: path prefixes it does not guard (no-auth-locations)
    snippet: str | None = None  # auth-snippet (only with allow-snippet-annotations)
    denied: str = ""  # resolved: why the location answers 503

    @property
    def id(self) -> str:
        return digest(repr(self))

    @property
    def path(self) -> str:
        return f"/_portolan-auth!{self.id}"

    @property
    def signin_location(self) -> str:
        return f"@portolan_signin_{self.id}"

    @property
    def signin_url(self) -> str:
        """auth-signin with ``<param>=<the original URL>``, unless it names the parameter itself."""
        assert self.signin is not None
        query = self.signin.partition("?")[2]
        if any(part.partition("=")[0] == self.redirect_param for part in query.split("&")):
            return self.signin
        sep = "&" if query else "?"
        return f"{self.signin}{sep}{self.redirect_param}=$scheme://$http_host$portolan_escaped_uri"

    @property
    def upstream_headers(self) -> tuple[tuple[str, str], ...]:
        return tuple((name, f"$portolan_auth_{i}") for i, name in enumerate(self.response_headers))

    @property
    def upstream(self) -> str:
        """With auth-keepalive, the upstream block the sub-requests go through (kept-alive
        connections), when the URL's host is an IP address; "" otherwise: a DNS name would be
        resolved once when nginx loads (and fail nginx -t when it does not resolve), a variable
        cannot name a server of a block (ingress-nginx has the same rule)."""
        address = self.host.rpartition(":")[0] or self.host
        if not self.keepalive or self.denied or "$" in self.host or not is_ip(address):
            return ""
        return f"portolan_auth_{self.id}"

    @property
    def target(self) -> str:
        """What the sub-request is proxied to: the URL, through the upstream block when there is one."""
        if not self.upstream:
            return self.url
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{self.upstream}" + ("/" + rest.partition("/")[2] if "/" in rest else "")

    @property
    def http_needs(self) -> tuple[tuple[str, ...], ...]:
        needs: list[tuple[str, ...]] = []
        if self.cache_key is not None and not self.denied:
            needs.append(("auth_cache",))
        if self.upstream:
            port = "" if ":" in self.host else (":443" if self.url.startswith("https:") else ":80")
            needs.append(("auth_upstream", self.upstream, self.host + port, str(self.keepalive),
                          str(self.keepalive_requests), str(self.keepalive_timeout)))  # fmt: skip
        return tuple(needs)


_FIELDS: dict[str, tuple[str, Any]] = {
    "auth-method": ("method", _token(_METHOD_RE, "method")),
    "auth-signin-redirect-param": ("redirect_param", _token(re.compile(r"^[A-Za-z0-9_-]{1,64}$"), "parameter name")),
    "auth-response-headers": ("response_headers", _headers),
    "auth-request-redirect": ("request_redirect", _request_redirect),
    "auth-cache-key": ("cache_key", _hash_by),
    "auth-cache-duration": ("cache_duration", _durations),
    "auth-always-set-cookie": ("always_set_cookie", _bool),
    "auth-keepalive": ("keepalive", _int(0, 10000)),
    "auth-keepalive-requests": ("keepalive_requests", _int(1, 10_000_000)),
    "auth-keepalive-timeout": ("keepalive_timeout", _int(1, 86400)),
    "auth-keepalive-share-vars": ("keepalive_share_vars", _bool),
    "auth-proxy-set-headers": ("proxy_headers_ref", _ref),
    "enable-global-auth": ("global_auth", _bool),
    "auth-snippet": ("snippet", _snippet),
}


def parse_field(key: str, text: str) -> Any:
    """One annotation's value (the ConfigMap's global-auth-* keys use these too)."""
    if key == "auth-url":
        return url_template(text, URL_VARIABLES)
    if key == "auth-signin":
        return url_template(text, SIGNIN_VARIABLES)[0]
    return _FIELDS[key][1](text)


def parse(raw: Mapping[str, str], notes: list[str]) -> ExternalAuth | None:
    values: dict[str, Any] = {}
    for key in sorted(raw):
        text = raw[key]
        try:
            if key == "auth-url":
                values["url"], values["host"] = parse_field(key, text)
            else:
                values["signin" if key == "auth-signin" else _FIELDS[key][0]] = parse_field(key, text)
        except ValueError as exc:  # InvalidValue too
            raise InvalidValue(f"annotation nginx.ingress.kubernetes.io/{key}: {text[:80]!r} is {exc}") from None
    if "url" not in values:
        others = sorted(k for k in raw if k != "enable-global-auth")
        if others:
            notes.append(f"annotations {', '.join(others)} ignored: no auth-url")
        return ExternalAuth(global_auth=False) if values.get("global_auth") is False else None
    found = ExternalAuth(**values)
    if found.keepalive and not found.upstream:
        notes.append("annotation auth-keepalive: the auth-url host is not an IP address; a connection per "
                     "sub-request")  # fmt: skip
    return found


def _proxy_headers(value: ExternalAuth, ctx: Context) -> tuple[tuple[tuple[str, str], ...], str]:
    """auth-proxy-set-headers: the ConfigMap's headers, or why the location is denied."""
    assert value.proxy_headers_ref is not None
    found, denied = same_namespace("ConfigMap", *value.proxy_headers_ref, ctx)
    if not isinstance(found, ConfigMap):
        return (), denied
    name = value.proxy_headers_ref[1]
    out = []
    for header in sorted(found.data):
        text = found.data[header]
        if not _HEADER_RE.fullmatch(header) or not _VALUE_RE.fullmatch(text.replace("$", "")):
            return (), f"ConfigMap {ctx.namespace}/{name}: {header[:40]!r} is not a header name with a plain value"
        if "$" in text:
            try:
                _hash_by(text)  # only variables nginx has, as upstream-hash-by
            except ValueError as exc:
                return (), f"ConfigMap {ctx.namespace}/{name}: {header}: {exc}"
        out.append((header, text))
    return tuple(out), ""


def from_settings(settings: Any) -> ExternalAuth | None:
    """The ConfigMap's global-auth-* as a value (validated when the settings were parsed)."""
    if not settings.global_auth_url[0]:
        return None
    return ExternalAuth(
        url=settings.global_auth_url[0], host=settings.global_auth_url[1], method=settings.global_auth_method or None,
        signin=settings.global_auth_signin or None, redirect_param=settings.global_auth_signin_redirect_param,
        response_headers=settings.global_auth_response_headers,
        request_redirect=settings.global_auth_request_redirect or None,
        always_set_cookie=settings.global_auth_always_set_cookie, exempt=settings.no_auth_locations,
    )  # fmt: skip


def resolve(value: ExternalAuth | None, ctx: Context) -> ExternalAuth | None:
    if value is None or (not value.url and value.global_auth):
        return from_settings(ctx.settings)
    if not value.url:
        return None  # enable-global-auth: "false"
    if value.proxy_headers_ref is not None:
        headers, denied = _proxy_headers(value, ctx)
        if denied:
            ctx.notes.append(f"{ctx.ingress}: auth-proxy-set-headers: {denied}: 503")
            return replace(value, denied=denied)
        value = replace(value, proxy_headers=headers)
    return value


FEATURE = Feature(
    group="external_auth",
    annotations=("auth-url", "auth-signin", "auth-signin-redirect-param", "auth-method", "auth-response-headers",
                 "auth-request-redirect", "auth-cache-key", "auth-cache-duration", "auth-keepalive",
                 "auth-keepalive-requests", "auth-keepalive-timeout", "auth-keepalive-share-vars",
                 "auth-always-set-cookie", "auth-proxy-set-headers", "enable-global-auth", "auth-snippet"),
    scope=LOCATION,
    risk="High",
    differs="URLs take only allow-listed variables ($host, $escaped_request_uri, ...); auth-keepalive keeps "
    "connections only to an auth-url whose host is an IP address (a Service's DNS name: a connection per "
    "sub-request); auth_request always shares the request's variables (auth-keepalive-share-vars is moot)",
    parse=parse,
    resolve=resolve,
    aside=True,
    ignored=("auth-snippet",),
)
