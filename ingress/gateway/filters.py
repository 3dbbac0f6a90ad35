"""HTTPRoute rule filters -> fields of the rule's route record, applied by the Lua access
handler (templates/lua/portolan.lua, M.gateway) after the match: RequestHeaderModifier,
RequestRedirect and URLRewrite, and by its header filter: ResponseHeaderModifier. Being data, a
filter changed needs no reload.

Fields (each value validated here; the record is urlencoded, so none can run into the next):

* ``hs``/``ha``/``hd``: set ``name:value`` (replaces), add ``name:value`` (appended to what the
  request has, comma-joined, as the spec says), remove ``name``; repeated; ``ps``/``pa``/``pd``
  the same for the response;
* ``rd=1`` a redirect, with ``rs`` scheme, ``rh`` hostname, ``rp`` port, ``rc`` status code,
  and ``rf`` (ReplaceFullPath) or ``rx`` (ReplacePrefixMatch) path;
* ``uh`` URLRewrite hostname (the Host sent upstream), ``uf`` / ``ux`` its path.
"""

from __future__ import annotations

import re
from typing import Any

from ingress.gateway import hostnames

_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$")
_PATH = re.compile(r"^/[-A-Za-z0-9/._~!$&'()*+,;=:@%]*$")
SUPPORTED = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite")
REDIRECT_CODES = (301, 302, 303, 307, 308)


class FilterError(ValueError):
    """A filter we cannot program: its reason (UnsupportedValue, IncompatibleFilters) and message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _value(text: Any, what: str) -> str:
    if not isinstance(text, str) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise FilterError("UnsupportedValue", f"invalid {what}")
    return text


def _headers(spec: dict[str, Any], keys: tuple[str, str, str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for action, key in zip(("set", "add", "remove"), keys, strict=True):
        for item in spec.get(action) or []:
            name = item if action == "remove" else (item.get("name") if isinstance(item, dict) else None)
            if not isinstance(name, str) or not _NAME.match(name):
                raise FilterError("UnsupportedValue", f"invalid header name in {action}")
            if name.lower() in seen:  # the spec: one action per header name
                raise FilterError("UnsupportedValue", f"header {name} is modified twice")
            seen.add(name.lower())
            out.append((key, name if action == "remove" else f"{name}:{_value(item.get('value'), 'header value')}"))
    return out


def _path(spec: Any, prefix_matches: int, full: str, prefix: str) -> list[tuple[str, str]]:
    if spec is None:
        return []
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "ReplaceFullPath":
        value = spec.get("replaceFullPath")
        key = full
    elif kind == "ReplacePrefixMatch":
        if prefix_matches != 1:
            raise FilterError("UnsupportedValue", "ReplacePrefixMatch needs exactly one PathPrefix match")
        value = spec.get("replacePrefixMatch")
        key = prefix
    else:
        raise FilterError("UnsupportedValue", f"path modifier {kind!r} is not supported")
    if not isinstance(value, str) or not _PATH.match(value) or "//" in value:
        raise FilterError("UnsupportedValue", f"invalid path {value!r}")
    return [(key, value)]


def _redirect(spec: dict[str, Any], prefix_matches: int) -> list[tuple[str, str]]:
    out = [("rd", "1")]
    scheme, host, port = spec.get("scheme"), spec.get("hostname"), spec.get("port")
    code = spec.get("statusCode", 302)
    if scheme is not None:
        if scheme not in ("http", "https"):
            raise FilterError("UnsupportedValue", f"redirect scheme {scheme!r}")
        out.append(("rs", scheme))
    if host is not None:
        if not isinstance(host, str) or host.startswith("*.") or not hostnames.valid(host):
            raise FilterError("UnsupportedValue", f"redirect hostname {host!r}")
        out.append(("rh", host))
    if port is not None:
        if not isinstance(port, int) or not 0 < port < 65536:
            raise FilterError("UnsupportedValue", f"redirect port {port!r}")
        out.append(("rp", str(port)))
    if code not in REDIRECT_CODES:
        raise FilterError("UnsupportedValue", f"redirect status {code!r}")
    out.append(("rc", str(code)))
    return out + _path(spec.get("path"), prefix_matches, "rf", "rx")


def fields(rule: dict[str, Any]) -> list[tuple[str, str]]:
    """The route record fields of a rule's filters and timeouts (FilterError: the route is not accepted)."""
    matches = rule.get("matches") or [{}]
    prefix_matches = sum(1 for m in matches if isinstance(m, dict)
                         and (m.get("path") or {}).get("type", "PathPrefix") == "PathPrefix")  # fmt: skip
    if len(matches) != prefix_matches:
        prefix_matches = 0  # ReplacePrefixMatch needs the rule's only match to be a prefix
    out: list[tuple[str, str]] = []
    kinds: list[str] = []
    for f in rule.get("filters") or []:
        kind = f.get("type") if isinstance(f, dict) else None
        if kind not in SUPPORTED or not isinstance(f, dict):
            raise FilterError("UnsupportedValue", f"filter {kind!r} is not supported")
        if kind in kinds:
            raise FilterError("UnsupportedValue", f"filter {kind} given twice")
        kinds.append(kind)
        if kind == "RequestHeaderModifier":
            out += _headers(f.get("requestHeaderModifier") or {}, ("hs", "ha", "hd"))
        elif kind == "ResponseHeaderModifier":
            out += _headers(f.get("responseHeaderModifier") or {}, ("ps", "pa", "pd"))
        elif kind == "RequestRedirect":
            out += _redirect(f.get("requestRedirect") or {}, prefix_matches)
        else:
            spec = f.get("urlRewrite") or {}
            host = spec.get("hostname")
            if host is not None:
                if not isinstance(host, str) or host.startswith("*.") or not hostnames.valid(host):
                    raise FilterError("UnsupportedValue", f"rewrite hostname {host!r}")
                out.append(("uh", host))
            out += _path(spec.get("path"), prefix_matches, "uf", "ux")
    if "RequestRedirect" in kinds and "URLRewrite" in kinds:
        raise FilterError("IncompatibleFilters", "RequestRedirect and URLRewrite cannot be combined")
    return out + timeout_fields(rule)


_DURATION = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
_UNIT_MS = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}


def duration_ms(text: Any) -> int:
    """A GEP-2257 duration (``1h30m``, ``500ms``) in milliseconds; 0 disables."""
    if not isinstance(text, str) or not _DURATION.match(text):
        raise FilterError("UnsupportedValue", f"invalid duration {text!r}")
    return sum(int(n) * _UNIT_MS[unit] for n, unit in re.findall(r"([0-9]+)(ms|h|m|s)", text))


def timeout_fields(rule: dict[str, Any]) -> list[tuple[str, str]]:
    """``to=<ms>``: the rule's timeouts as nginx can keep them. nginx has no whole-request
    timer; the balancer sets the connect, send and read timeouts of each try to the shorter of
    ``request`` and ``backendRequest`` (0 or unset: the controller's proxy timeouts)."""
    spec = rule.get("timeouts")
    if spec is None:
        return []
    if not isinstance(spec, dict):
        raise FilterError("UnsupportedValue", "timeouts is not an object")
    values = [duration_ms(spec[k]) for k in ("request", "backendRequest") if k in spec]
    values = [v for v in values if v > 0]
    return [("to", str(min(values)))] if values else []
