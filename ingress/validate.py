"""Typed values for every user string that can reach nginx.conf.

The injection CVEs of ingress-nginx all share one cause: a user string pasted into a text
format whose syntax (``;``, ``{``, quotes, newlines, ``$``) lets it escape its slot, guarded by
block-lists that kept being bypassed. Here every value is parsed against an allow-list into a
small typed value, and whatever does not parse rejects the whole Ingress (reported, left out).
The template then quotes even these safe values with ``nginx_quote``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

EXACT, PREFIX = "Exact", "Prefix"
IMPLEMENTATION_SPECIFIC = "ImplementationSpecific"
PATH_TYPES = (EXACT, PREFIX, IMPLEMENTATION_SPECIFIC)

# Applied with fullmatch, never match + "$": in Python "$" also matches before a trailing
# newline, and a newline is exactly what ends an nginx directive.
_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_HOST_RE = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")
_SUBDOMAIN_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_DNS1123_LABEL_RE = re.compile(rf"^{_LABEL}$")
_DNS1035_LABEL_RE = re.compile(r"^[a-z](?:[-a-z0-9]*[a-z0-9])?$")
# IANA_SVC_NAME: lowercase letters, digits and single hyphens, at least one letter.
_PORT_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
# What an Exact/Prefix path may hold once percent-escapes are decoded: ingress-nginx's
# strict-validate-path-type set plus "~" (unreserved in RFC 3986).
_PATH_RE = re.compile(r"^/[A-Za-z0-9._~\-/]*$")
_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
MAX_PATH = 1024
# A use-regex path: PCRE syntax out of an allow-list. Braces are in it, for {n} and {m,n}
# quantifiers: a regex only ever reaches nginx.conf inside double quotes (nginx_quote), where
# "{" and "}" open and close nothing. No backslash (so no escapes at all: use [0-9] for \d),
# no quotes, whitespace, ";", "#". "$" only as an end anchor: followed by ")" "|" or the end,
# so never "$name" or "${name}" (nginx expands no variable in a location or rewrite regex, but
# the allow-list does not count on where a value lands). "(?" is refused too: no inline flags
# or look-arounds to reason about, and no named capture "(?<name>", which would set the nginx
# variable $name (ours included) for the whole request.
_REGEX_ITEM = r"(?:[A-Za-z0-9._~/()|?*+^\[\],:=!{}-]|\$(?=[)|]|$))"
_REGEX_RE = re.compile(rf"^/{_REGEX_ITEM}*$")
# A regex that is not a path (canary-by-header-pattern): the same allow-list, any first character.
_PATTERN_RE = re.compile(rf"^{_REGEX_ITEM}+$")
MAX_REGEX = 256
# The numbers of a {n}, {n,}, {m,n} (or {,n}) quantifier. PCRE refuses any above 65535, which
# Python's re (our compile check) accepts: nginx -t would then fail the whole configuration.
_QUANTIFIER_RE = re.compile(r"\{([0-9]*),?([0-9]*)\}")
PCRE_MAX_REPEAT = 65535


class InvalidValue(ValueError):
    """A user value that may not reach the configuration; the message names the field."""


def nginx_quote(value: object) -> str:
    """``value`` as one double-quoted nginx token.

    Refuses control characters (a newline ends a directive in nginx's grammar) and escapes
    the two characters that are special inside nginx double quotes. ``$`` is left as is:
    only validated values reach the template, and some (``$host``) are meant as variables;
    validators refuse ``$`` wherever a user string could carry one.
    """
    text = str(value)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise InvalidValue(f"control character in configuration value {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def host(value: Any, field: str, *, wildcard: bool = True) -> str:
    """A rule or TLS host: lowercase DNS subdomain, optionally ``*.`` + subdomain; no IPs."""
    if not isinstance(value, str) or not value:
        raise InvalidValue(f"{field}: must be a non-empty string")
    if not value.isascii():  # before lower(): the Kelvin sign would pass as a "k"
        raise InvalidValue(f"{field}: {value!r} is not a valid DNS name")
    text = value.lower()
    if len(text) > 253:
        raise InvalidValue(f"{field}: {value!r} is longer than 253 characters")
    if not _HOST_RE.fullmatch(text) or any(len(label) > 63 for label in text.split(".")):
        raise InvalidValue(f"{field}: {value!r} is not a valid DNS name")
    if text.startswith("*.") and not wildcard:
        raise InvalidValue(f"{field}: wildcard {value!r} not allowed here")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return text
    raise InvalidValue(f"{field}: {value!r} is an IP address, not a host name")


def path(value: Any, path_type: str, field: str) -> str:
    """A path as nginx will match it: percent-escapes decoded (nginx matches locations
    against the decoded URI), characters from an allow-list, no dot or empty segments."""
    if value is None or value == "":
        return "/"
    if not isinstance(value, str):
        raise InvalidValue(f"{field}: must be a string")
    if len(value) > MAX_PATH:
        raise InvalidValue(f"{field}: longer than {MAX_PATH} characters")
    if _PERCENT_RE.search(value):
        raise InvalidValue(f"{field}: {value!r} has a malformed percent-escape")
    if "%2f" in value.lower():
        raise InvalidValue(f"{field}: {value!r} holds an encoded slash (%2F)")
    try:
        decoded = unquote(value, errors="strict") if "%" in value else value
    except UnicodeDecodeError:
        raise InvalidValue(f"{field}: {value!r} percent-decodes to invalid UTF-8") from None
    if not _PATH_RE.fullmatch(decoded):
        raise InvalidValue(
            f"{field}: {value!r} must start with / and hold only letters, digits and . _ ~ - / ({path_type})"
        )
    if "//" in decoded:
        raise InvalidValue(f"{field}: {value!r} has an empty segment (//)")
    segments = decoded.split("/")
    if "." in segments or ".." in segments:
        raise InvalidValue(f"{field}: {value!r} has a . or .. segment")
    return decoded


def is_plain_path(value: str) -> bool:
    """Whether a (validated) path holds no regex syntax: only what Exact/Prefix paths may."""
    return _PATH_RE.fullmatch(value) is not None


def regex_path(value: Any, field: str) -> str:
    """A path of an Ingress with use-regex (or rewrite-target): an allow-listed regex that compiles."""
    if value is None or value == "":
        return "/"
    return _regex(value, field, _REGEX_RE, "regex path")


def regex(value: Any, field: str) -> str:
    """A user regex that is not a path (canary-by-header-pattern), under the regex paths' rules."""
    return _regex(value, field, _PATTERN_RE, "regex")


def _regex(value: Any, field: str, allowed: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_REGEX or not allowed.fullmatch(value) or "(?" in value:
        raise InvalidValue(
            f"{field}: {value!r} is not an allowed {what} (letters, digits, ._~/()|?*+^[],:={{}}!- and $ as an anchor)"
        )
    # Before compiling: Python's re raises OverflowError, not re.error, on a huge count.
    if any(int(n) > PCRE_MAX_REPEAT for m in _QUANTIFIER_RE.finditer(value) for n in m.groups() if n):
        raise InvalidValue(f"{field}: {value!r} repeats more than {PCRE_MAX_REPEAT} times, PCRE's limit")
    try:
        re.compile(value)
    except re.error as exc:
        raise InvalidValue(f"{field}: {value!r} is not a valid regex: {exc}") from None
    return value


def path_type(value: Any, field: str) -> str:
    """Exact, Prefix or ImplementationSpecific (the default when unset, as in v1beta1)."""
    if value is None or value == "":
        return IMPLEMENTATION_SPECIFIC
    if value not in PATH_TYPES:
        raise InvalidValue(f"{field}: {value!r} is not one of {', '.join(PATH_TYPES)}")
    return str(value)


def service_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or len(value) > 63 or not _DNS1035_LABEL_RE.fullmatch(value):
        raise InvalidValue(f"{field}: {value!r} is not a valid Service name (DNS-1035 label)")
    return value


def port_number(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidValue(f"{field}: {value!r} is not a port number (1-65535)")
    return value


def port_name(value: Any, field: str) -> str:
    if (
        not isinstance(value, str)
        or len(value) > 15
        or not _PORT_NAME_RE.fullmatch(value)
        or "--" in value
        or not any(c.isalpha() for c in value)
    ):
        raise InvalidValue(f"{field}: {value!r} is not a valid port name")
    return value


def secret_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or len(value) > 253 or not _SUBDOMAIN_RE.fullmatch(value):
        raise InvalidValue(f"{field}: {value!r} is not a valid Secret name")
    return value


def namespace(value: Any, field: str = "metadata.namespace") -> str:
    if not isinstance(value, str) or len(value) > 63 or not _DNS1123_LABEL_RE.fullmatch(value):
        raise InvalidValue(f"{field}: {value!r} is not a valid namespace")
    return value


def object_name(value: Any, field: str = "metadata.name") -> str:
    if not isinstance(value, str) or len(value) > 253 or not _SUBDOMAIN_RE.fullmatch(value):
        raise InvalidValue(f"{field}: {value!r} is not a valid object name")
    return value


# What an API server assigns (a UUID); "" for objects read from manifests, which have none.
# A UID never reaches nginx.conf, but IngressNightmare's exploit carried its payload in one: a
# UID of any other shape is not an object an API server made.
_UID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def uid(value: Any, field: str = "metadata.uid") -> str:
    if value == "":
        return ""
    if not isinstance(value, str) or not _UID_RE.fullmatch(value):
        raise InvalidValue(f"{field}: {value[:80] if isinstance(value, str) else value!r} is not a valid UID")
    return value


def ip(value: Any, field: str) -> str:
    """An IP address in canonical form. IPv6 zones are refused: ``ipaddress`` accepts any
    text after "%" (``fe80::1%;}``), which would reach the configuration unquoted."""
    if not isinstance(value, str) or "%" in value:
        raise InvalidValue(f"{field}: {value!r} is not an IP address")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidValue(f"{field}: {value!r} is not an IP address") from None


def is_ip(value: str) -> bool:
    try:
        ip(value, "")
    except InvalidValue:
        return False
    return True


def external_name(value: Any, field: str) -> str:
    """An ExternalName target: an IP address or a DNS name (a trailing dot is dropped)."""
    if not isinstance(value, str) or not value:
        raise InvalidValue(f"{field}: empty")
    text = value.lower().rstrip(".")
    if is_ip(text):
        return ip(text, field)
    try:
        return host(text, field, wildcard=False)
    except InvalidValue:
        raise InvalidValue(f"{field}: {value!r} is neither an IP address nor a DNS name") from None


def ns_name(value: str, flag: str) -> tuple[str, str]:
    """A ``NAMESPACE/NAME`` flag value."""
    ns, sep, name = value.partition("/")
    if not sep:
        raise InvalidValue(f"{flag}: {value!r} must be NAMESPACE/NAME")
    return namespace(ns, flag), object_name(name, flag)


# --------------------------------------------------------------------------- Ingress spec


@dataclass(frozen=True, slots=True)
class Backend:
    """A Service backend of an Ingress: the Service and its port, by number or by name."""

    service: str
    port_number: int | None
    port_name: str | None

    @property
    def port_label(self) -> str:
        return str(self.port_number) if self.port_number is not None else str(self.port_name)


@dataclass(frozen=True, slots=True)
class PathRule:
    """One path of an Ingress rule: the path, its pathType and its backend."""

    path: str  # decoded, as written (a Prefix's trailing slash is dropped by the model)
    path_type: str  # as written: Exact | Prefix | ImplementationSpecific
    backend: Backend | None  # None: a resource backend, which we do not serve

    @property
    def match_type(self) -> str:
        """ImplementationSpecific is Prefix here, as in ingress-nginx without use-regex."""
        return EXACT if self.path_type == EXACT else PREFIX


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of an Ingress: a host (or none) and its paths."""

    host: str | None  # None: applies to every host no other rule names
    paths: tuple[PathRule, ...]


@dataclass(frozen=True, slots=True)
class Tls:
    """One TLS entry of an Ingress: the hosts it covers and the Secret with their certificate."""

    hosts: tuple[str, ...]  # empty: every host of the Ingress
    secret: str | None


@dataclass(frozen=True, slots=True)
class IngressSpec:
    """An Ingress spec once validated: default backend, rules and TLS entries, typed."""

    default_backend: Backend | None
    rules: tuple[Rule, ...]
    tls: tuple[Tls, ...]


def _mapping(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidValue(f"{field}: must be a mapping")
    return value


def _sequence(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidValue(f"{field}: must be a list")
    return value


def backend(value: Any, field: str) -> Backend | None:
    raw = _mapping(value, field)
    if raw.get("resource") is not None and raw.get("service") is None:
        return None
    svc = _mapping(raw.get("service"), f"{field}.service")
    if not svc:
        raise InvalidValue(f"{field}: service is required")
    name = service_name(svc.get("name"), f"{field}.service.name")
    port = _mapping(svc.get("port"), f"{field}.service.port")
    number, pname = port.get("number"), port.get("name")
    if (number is None) == (pname is None or pname == ""):
        raise InvalidValue(f"{field}.service.port: exactly one of number and name is required")
    if number is not None:
        return Backend(name, port_number(number, f"{field}.service.port.number"), None)
    return Backend(name, None, port_name(pname, f"{field}.service.port.name"))


def ingress_spec(spec: dict[str, Any], *, regex: bool = False) -> IngressSpec:
    """Parse and validate an Ingress's spec; InvalidValue names the first bad field.
    ``regex``: the Ingress has use-regex/rewrite-target, so its non-Exact paths are regexes."""
    default = spec.get("defaultBackend")
    default_backend = backend(default, "spec.defaultBackend") if default is not None else None
    rules = []
    for i, raw_rule in enumerate(_sequence(spec.get("rules"), "spec.rules")):
        where = f"spec.rules[{i}]"
        raw_rule = _mapping(raw_rule, where)
        raw_host = raw_rule.get("host")
        rule_host = host(raw_host, f"{where}.host") if raw_host not in (None, "") else None
        paths = []
        http = _mapping(raw_rule.get("http"), f"{where}.http")
        for j, raw_path in enumerate(_sequence(http.get("paths"), f"{where}.http.paths")):
            pwhere = f"{where}.http.paths[{j}]"
            raw_path = _mapping(raw_path, pwhere)
            ptype = path_type(raw_path.get("pathType"), f"{pwhere}.pathType")
            paths.append(
                PathRule(
                    regex_path(raw_path.get("path"), f"{pwhere}.path")
                    if regex and ptype != EXACT
                    else path(raw_path.get("path"), ptype, f"{pwhere}.path"),
                    ptype,
                    backend(raw_path.get("backend"), f"{pwhere}.backend"),
                )
            )
        rules.append(Rule(rule_host, tuple(paths)))
    if not rules and default is None:
        raise InvalidValue("spec: an Ingress needs rules or a defaultBackend")
    tls = []
    for i, raw_tls in enumerate(_sequence(spec.get("tls"), "spec.tls")):
        where = f"spec.tls[{i}]"
        raw_tls = _mapping(raw_tls, where)
        hosts = tuple(host(h, f"{where}.hosts[{k}]") for k, h in enumerate(_sequence(raw_tls.get("hosts"), where)))
        secret = raw_tls.get("secretName")
        tls.append(Tls(hosts, secret_name(secret, f"{where}.secretName") if secret not in (None, "") else None))
    return IngressSpec(default_backend, tuple(rules), tuple(tls))


# An nginx size: ASCII digits only ("\d" would also take other scripts' digits, which nginx refuses).
_SIZE_RE = re.compile(r"[0-9]{1,9}[kKmMgG]?")


def nginx_size(text: str) -> str:
    """A size as nginx reads it ("0", "512k", "8m", "1g"), lower-cased; ValueError otherwise."""
    if not _SIZE_RE.fullmatch(text):
        raise ValueError("not a size like 8m, 512k or 0")
    return text.lower()
