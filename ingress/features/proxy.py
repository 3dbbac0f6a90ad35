"""Proxy: how nginx talks to the backend, per location (proxy-http-version, proxy-next-upstream*,
the buffers, proxy-redirect-*, proxy-cookie-*, connection-proxy-header, x-forwarded-prefix).

Every value is parsed to a type (a size, a count, a keyword from nginx's list) or checked against
a narrow alphabet and quoted; the ConfigMap's settings stay the default where an annotation is
not set, so only what an Ingress sets is rendered in its locations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ingress.features import LOCATION, Context, Feature, parse_fields, whole
from ingress.validate import InvalidValue, host, nginx_quote, nginx_size

# proxy_next_upstream's conditions (nginx's list; ingress-nginx passes them through).
NEXT_UPSTREAM = ("error", "timeout", "invalid_header", "http_500", "http_502", "http_503", "http_504", "http_403",
                 "http_404", "http_429", "non_idempotent", "off")  # fmt: skip
_PATH_RE = re.compile(r"/[A-Za-z0-9._~/%=&+-]{0,1023}")
# A Connection header value: one or more tokens ("close", "keep-alive", "upgrade, keep-alive").
_CONNECTION_RE = re.compile(r"[A-Za-z-]{1,32}(?:, ?[A-Za-z-]{1,32}){0,3}")


@dataclass(frozen=True, slots=True)
class Proxy:
    """The proxy-* annotations that were set (None: the ConfigMap's / nginx's default)."""

    group: ClassVar[str] = "proxy"
    http_version: str | None = None
    next_upstream: tuple[str, ...] = ()
    next_upstream_tries: int | None = None
    next_upstream_timeout: int | None = None
    buffer_size: str | None = None
    buffers_number: int | None = None
    max_temp_file_size: str | None = None
    client_body_buffer_size: str | None = None
    request_buffering: bool | None = None
    redirect_from: str | None = None  # "off", "default", or a URL/path prefix
    redirect_to: str | None = None
    cookie_domain: tuple[str, ...] = ()  # ("off",) or (from, to)
    cookie_path: tuple[str, ...] = ()
    connection: str | None = None
    forwarded_prefix: str | None = None

    @property
    def upstream_headers(self) -> tuple[tuple[str, str], ...]:
        out = []
        if self.connection is not None:
            out.append(("Connection", nginx_quote(self.connection)))
        if self.forwarded_prefix is not None:
            out.append(("X-Forwarded-Prefix", nginx_quote(self.forwarded_prefix)))
        return tuple(out)


def _seconds(text: str) -> int:
    return int(whole(0, 86400)(text[:-1] if text.endswith("s") else text))


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise ValueError("not on or off")
    return text == "on"


def _http_version(text: str) -> str:
    if text not in ("1.0", "1.1"):
        raise ValueError("not 1.0 or 1.1")
    return text


def _next_upstream(text: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(text.split()))
    if not items or any(i not in NEXT_UPSTREAM for i in items) or ("off" in items and len(items) > 1):
        raise ValueError(f"not a list of {', '.join(NEXT_UPSTREAM)}")
    return items


def _path(text: str) -> str:
    if not _PATH_RE.fullmatch(text) or "/../" in text + "/":
        raise ValueError("not a path of letters, digits and ._~/%=&+-")
    return text


def _redirect(text: str) -> str:
    """proxy_redirect's operand: a path, or an http(s) URL (rebuilt from its checked parts)."""
    from ingress.annotations import url

    return _path(text) if text.startswith("/") else url(text)


def _redirect_from(text: str) -> str:
    return text if text in ("off", "default") else _redirect(text)


def _domain(text: str) -> str:
    return host(text.removeprefix("."), "cookie domain", wildcard=False)


def _pair(item: Any) -> Any:
    def parse(text: str) -> tuple[str, ...]:
        if text == "off":
            return ("off",)
        parts = text.split()
        if len(parts) != 2:
            raise ValueError("not 'off' or two values 'from to'")
        return (item(parts[0]), item(parts[1]))

    return parse


def _buffer_size(text: str) -> str:
    size = nginx_size(text)
    if size.rstrip("kmg") in ("", "0") or size.rstrip("kmg").lstrip("0") == "":
        raise ValueError("not a size above 0")
    return size


def _connection(text: str) -> str:
    if not _CONNECTION_RE.fullmatch(text):
        raise ValueError("not a Connection header value")
    return text


_FIELDS: dict[str, tuple[str, Any]] = {
    "proxy-http-version": ("http_version", _http_version),
    "proxy-next-upstream": ("next_upstream", _next_upstream),
    "proxy-next-upstream-tries": ("next_upstream_tries", whole(0, 100)),
    "proxy-next-upstream-timeout": ("next_upstream_timeout", _seconds),
    "proxy-buffer-size": ("buffer_size", _buffer_size),
    # nginx wants the busy buffers (one buffer here) under all buffers but one: 3 at least.
    "proxy-buffers-number": ("buffers_number", whole(3, 1024)),
    "proxy-max-temp-file-size": ("max_temp_file_size", nginx_size),
    "client-body-buffer-size": ("client_body_buffer_size", nginx_size),
    "proxy-request-buffering": ("request_buffering", _on_off),
    "proxy-redirect-from": ("redirect_from", _redirect_from),
    "proxy-redirect-to": ("redirect_to", _redirect),
    "proxy-cookie-domain": ("cookie_domain", _pair(_domain)),
    "proxy-cookie-path": ("cookie_path", _pair(_path)),
    "connection-proxy-header": ("connection", _connection),
    "x-forwarded-prefix": ("forwarded_prefix", _path),
}


def parse(raw: Mapping[str, str], notes: list[str]) -> Proxy | None:
    if not raw:
        return None
    values = parse_fields(raw, _FIELDS)
    # As in ingress-nginx: proxy-redirect-to only counts with a proxy-redirect-from naming a URL.
    if values.get("redirect_from") not in (None, "off", "default") and "redirect_to" not in values:
        raise InvalidValue("annotation nginx.ingress.kubernetes.io/proxy-redirect-from: needs proxy-redirect-to")
    if "redirect_to" in values and values.get("redirect_from") in (None, "off", "default"):
        notes.append("annotation proxy-redirect-to ignored: no proxy-redirect-from URL")
        del values["redirect_to"]
    return Proxy(**values)


def resolve(value: Proxy | None, ctx: Context) -> Proxy | None:
    return value


FEATURE = Feature(
    group="proxy",
    annotations=tuple(_FIELDS),
    scope=LOCATION,
    risk="Low",
    differs="proxy-redirect-*, proxy-cookie-* and x-forwarded-prefix take paths, http(s) URLs and host names "
    "only (no nginx variables or regexes); proxy-redirect-from with a URL needs proxy-redirect-to; "
    "proxy-buffers-number is at least 3 (nginx refuses fewer with its busy buffers)",
    parse=parse,
    resolve=resolve,
)
