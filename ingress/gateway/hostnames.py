"""Gateway API hostnames: validation, listener/route intersection, matching.

A wildcard ``*.example.com`` stands for one or more labels (``a.b.example.com`` too, not
``example.com``); a missing hostname (``None`` here) matches every host. nginx's own leading
wildcard server names mean the same, which is why listeners become nginx server names as
they are (ingress/gateway/translate.py).
"""

from __future__ import annotations

import re

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")


def valid(hostname: str) -> bool:
    """A precise DNS name or one leading ``*.`` label, lower case, no IP address, at most 253."""
    if len(hostname) > 253 or not _HOSTNAME.match(hostname):
        return False
    return not re.fullmatch(r"[0-9.]+", hostname)


def covers(wildcard: str, name: str) -> bool:
    """Whether ``*.suffix`` covers ``name`` (precise or a wildcard): one or more labels before the suffix."""
    suffix = wildcard[1:]  # ".suffix"
    return name.endswith(suffix) and len(name) > len(suffix)


def intersect(listener: str | None, route: str | None) -> tuple[bool, str | None]:
    """Whether a route hostname meets a listener's, and the effective hostname: the more
    specific of the two when one covers the other (None when both match everything)."""
    if listener is None:
        return True, route
    if route is None or listener == route:
        return True, listener
    if listener.startswith("*.") and covers(listener, route):
        return True, route
    if route.startswith("*.") and covers(route, listener):
        return True, listener
    return False, None


def effective(listener: str | None, routes: list[str | None]) -> list[str | None]:
    """The effective hostnames of a route on a listener (empty: they do not meet)."""
    return [name for ok, name in (intersect(listener, r) for r in routes) if ok]


def matches(pattern: str | None, host: str) -> bool:
    """Whether request host ``host`` (lower case, no port) matches ``pattern``."""
    if pattern is None:
        return True
    if pattern.startswith("*."):
        return covers(pattern, host)
    return pattern == host
