"""Annotation feature groups: each module owns one group of ingress-nginx annotations.

A group (``Feature``) declares its annotations, its scope (``location``: each path of the
Ingress; ``server``: the host, taken from the oldest Ingress of the host that sets it, as
ingress-nginx does), its risk in ingress-nginx's terms, how it differs from ingress-nginx, and
two steps:

* ``parse(raw, notes)``: the group's annotations (prefix stripped) to one typed, frozen value,
  or None when none of them is set. Every string is checked against an allow-list; a bad one
  raises ValueError/InvalidValue, which rejects the whole Ingress (ingress/annotations.py).
* ``resolve(value, ctx)``: at build time, what the value needs from other objects (a Secret, a
  ConfigMap) and from the ConfigMap settings, as a new value; problems become notes and,
  where ingress-nginx denies the location, a 503.

Values sit in ``Annotations.features`` (a tuple, one per group set), so a host with any of them
leaves the pooled server blocks (ingress/pooling.py compares annotations with the defaults).
Each group renders ``templates/features/<group>.j2`` inside a location; a server-scope group
also ``<group>_server.j2`` among the server's directives; a group with ``aside`` also
``<group>_aside.j2`` after the locations (internal locations it needs, once per distinct value).

Files a value needs on disk (htpasswd, CA bundles) are ``SideFile``s, named by the digest of
their content and written under ``--config-dir``/auth before ``nginx -t`` (ingress/features/files.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ingress.settings import NginxSettings

LOCATION, SERVER = "location", "server"


class Lookup(Protocol):
    """Read access to the objects values refer to (model.Lookup satisfies it)."""

    def get(self, kind: str, namespace: str, name: str) -> object | None: ...


@dataclass(frozen=True, slots=True)
class SideFile:
    """A file nginx reads, written by the controller under --config-dir/auth.

    ``worker``: read by nginx's workers per request (htpasswd), which do not run as root when
    the master does; otherwise only the master reads it, at load (CA bundles, keys)."""

    name: str  # "<digest>.<kind>": the digest of the content, so a new content is a new file
    data: bytes = field(repr=False)
    worker: bool = False

    @classmethod
    def of(cls, kind: str, data: bytes, *, worker: bool = False) -> SideFile:
        return cls(f"{hashlib.sha256(data).hexdigest()[:24]}.{kind}", data, worker)


@dataclass(frozen=True, slots=True)
class Context:
    """What resolving a value may use: the Ingress's namespace, look-ups, settings, notes."""

    namespace: str
    ingress: str  # "ns/name", for notes
    lookup: Lookup
    settings: NginxSettings
    notes: list[str]


@dataclass(frozen=True, slots=True)
class Feature:
    """One group of annotations and what it says about itself."""

    group: str  # also names its templates
    annotations: tuple[str, ...]  # without the nginx.ingress.kubernetes.io/ prefix
    scope: str  # LOCATION | SERVER
    risk: str  # ingress-nginx's annotation risk: Low, Medium, High, Critical
    differs: str  # how it differs from ingress-nginx ("" when it does not)
    parse: Callable[[Mapping[str, str], list[str]], Any]
    resolve: Callable[[Any, Context], Any]
    aside: bool = False  # has <group>_aside.j2 (blocks next to the locations)
    ignored: tuple[str, ...] = ()  # its snippet-like annotations, never rendered without allow-snippets


def _registry() -> tuple[Feature, ...]:
    from ingress.features import auth, backend_tls, client_tls, external_auth, proxy, rate_limit

    return (auth.FEATURE, external_auth.FEATURE, client_tls.FEATURE, backend_tls.FEATURE, proxy.FEATURE,
            rate_limit.FEATURE)




def parse(raw: Mapping[str, str], notes: list[str]) -> tuple[Any, ...]:
    """Every group's value from the annotations it owns (``raw``: prefix stripped, screened)."""
    out = []
    for feature in FEATURES:
        mine = {k: v for k, v in raw.items() if k in feature.annotations}
        value = feature.parse(mine, notes)
        if value is not None:
            out.append(value)
    return tuple(out)


def resolve(values: tuple[Any, ...], ctx: Context) -> tuple[Any, ...]:
    """The values with what they need from Secrets, ConfigMaps and settings; groups that the
    settings add (global auth) included."""
    out = []
    for feature in FEATURES:
        value = next((v for v in values if v.group == feature.group), None)
        found = feature.resolve(value, ctx)
        if found is not None:
            out.append(found)
    return tuple(out)


def parse_fields(raw: Mapping[str, str], fields: Mapping[str, tuple[str, Callable[[str], Any]]]) -> dict[str, Any]:
    """The group's annotations as its value's fields (``fields``: annotation -> (field, parser));
    a value a parser refuses rejects the Ingress, naming the annotation."""
    from ingress.validate import InvalidValue

    values: dict[str, Any] = {}
    for key in sorted(raw):
        text = raw[key]
        field, parser = fields[key]
        try:
            values[field] = parser(text)
        except ValueError as exc:
            raise InvalidValue(f"annotation nginx.ingress.kubernetes.io/{key}: {text[:80]!r} is {exc}") from None
    return values


def whole(lo: int, hi: int) -> Callable[[str], int]:
    """A parser of ASCII whole numbers in lo..hi."""

    def parse(text: str) -> int:
        if not text.isascii() or not text.isdigit() or len(text) > 9 or not lo <= int(text) <= hi:
            raise ValueError(f"not a whole number in {lo}..{hi}")
        return int(text)

    return parse


def secret_ref(text: str) -> tuple[str | None, str]:
    """A Secret annotation's "[namespace/]name": (namespace or None, name), both validated."""
    from ingress.validate import namespace, secret_name

    ns, sep, name = text.rpartition("/")
    return (namespace(ns, "namespace") if sep else None), secret_name(name, "name")


def same_namespace(kind: str, ref_namespace: str | None, name: str, ctx: Context, key: str = "") -> tuple[Any, str]:
    """The object a value names in the Ingress's own namespace (ingress-nginx's default refuses
    others: allow-cross-namespace-resources is off), or why it cannot be used; with ``key``, the
    object must hold that data key."""
    where = f"{kind} {ref_namespace or ctx.namespace}/{name}"
    if ref_namespace not in (None, ctx.namespace):
        return None, f"{where} is in another namespace (not allowed)"
    found = ctx.lookup.get(kind.lower() + "s", ctx.namespace, name)
    if found is None:
        return None, f"{where} not found"
    if key and key not in getattr(found, "data", {}):
        return None, f"{where} has no key {key}"
    return found, ""


def of_scope(values: Iterable[Any], scope: str) -> tuple[Any, ...]:
    return tuple(v for v in values if BY_GROUP[v.group].scope == scope)


def find(values: Iterable[Any], group: str) -> Any:
    return next((v for v in values if v.group == group), None)


def asides(locations: Iterable[Any]) -> list[Any]:
    """The distinct values of a server's locations that render blocks next to them."""
    seen: dict[Any, None] = {}
    for loc in locations:
        for value in loc.ann.features:
            if BY_GROUP[value.group].aside:
                seen.setdefault(value)
    return list(seen)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def location_values(server: Any, location: Any) -> tuple[Any, ...]:
    """What a location renders: its server's server-scope values, then its own location-scope
    ones, but those exempting its path (global auth's no-auth-locations)."""
    path = location.path.lstrip("^")
    own = (v for v in of_scope(location.ann.features, LOCATION)
           if not any(path.startswith(e) for e in getattr(v, "exempt", ())))  # fmt: skip
    return (*server.features, *own)


def upstream_headers(server: Any, location: Any) -> list[tuple[str, str]]:
    """(header, nginx value) pairs the location's values send upstream (the values are ours)."""
    return [pair for value in location_values(server, location) for pair in getattr(value, "upstream_headers", ())]


def template_context(root: str) -> dict[str, object]:
    """What the feature templates use beyond the model (``root``: the files' directory)."""
    from ingress.features.client_tls import CN_MAP_REGEX

    return dict(auth_dir=root, location_features=location_values, upstream_headers=upstream_headers,
                feature_asides=asides, cn_map_regex=CN_MAP_REGEX)  # fmt: skip


# Last: the groups import what is defined above.
FEATURES: tuple[Feature, ...] = _registry()
BY_GROUP = {f.group: f for f in FEATURES}
ANNOTATIONS = frozenset(a for f in FEATURES for a in f.annotations)
SNIPPETS = frozenset(a for f in FEATURES for a in f.ignored)


def markdown() -> str:
    """The groups as a Markdown table (README's "Authentication annotations" section; a test
    keeps the two equal): annotations, scope, risk, how they differ from ingress-nginx."""
    rows = ["| group | annotations | scope | risk | differs from ingress-nginx |", "|---|---|---|---|---|"]
    for f in FEATURES:
        names = ", ".join(f"`{a}`" for a in f.annotations)
        rows.append(f"| {f.group} | {names} | {f.scope} | {f.risk} | {f.differs} |")
    return "\n".join(rows) + "\n"
