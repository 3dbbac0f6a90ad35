"""RateLimit additions, per location: limit-rpm, limit-rate, limit-rate-after and
limit-allowlist (limit-whitelist, its older name). limit-rps, limit-connections and
limit-burst-multiplier stay in ingress/annotations.py; the allow-list applies to them too, as in
ingress-nginx: an allow-listed client is not counted by any of the Ingress's zones.

Zones are per Ingress (named by the digest of "namespace/name", the same name the older limits
use), so two Ingresses with the same limits do not share counters. The allow-list becomes a geo
block and a map at http level whose key is empty for allow-listed addresses (nginx counts no
request with an empty key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ingress.annotations import cidrs
from ingress.features import LOCATION, Context, Feature, parse_fields, whole


@dataclass(frozen=True, slots=True)
class RateLimit:
    """limit-rpm (requests per minute per client address), limit-rate / limit-rate-after (KB/s,
    KB of each response), the allow-list; resolved: the Ingress's zone name."""

    group: ClassVar[str] = "rate_limit"
    rpm: int | None = None
    rate: int | None = None
    rate_after: int | None = None
    allowlist: tuple[str, ...] = ()
    zone: str = ""  # resolved

    @property
    def http_needs(self) -> tuple[tuple[str, ...], ...]:
        needs: list[tuple[str, ...]] = []
        if self.allowlist:
            needs.append(("limit_allow", self.zone, *self.allowlist))
        if self.rpm:
            needs.append(("limit_rpm", self.zone, str(self.rpm)))
        return tuple(needs)


_FIELDS: dict[str, tuple[str, Any]] = {
    "limit-rpm": ("rpm", whole(1, 6_000_000)),
    "limit-rate": ("rate", whole(0, 100_000_000)),
    "limit-rate-after": ("rate_after", whole(0, 100_000_000)),
    "limit-allowlist": ("allowlist", cidrs),
    "limit-whitelist": ("allowlist", cidrs),
}


def parse(raw: Mapping[str, str], notes: list[str]) -> RateLimit | None:
    if not raw:
        return None
    if "limit-allowlist" in raw and "limit-whitelist" in raw:
        notes.append("annotation limit-whitelist ignored: limit-allowlist is set")
        raw = {k: v for k, v in raw.items() if k != "limit-whitelist"}
    values = parse_fields(raw, _FIELDS)
    if values.get("rate") == 0:
        del values["rate"]  # 0: no limit, as nginx and ingress-nginx read it
    return RateLimit(**values)


def resolve(value: RateLimit | None, ctx: Context) -> RateLimit | None:
    if value is None:
        return None
    from ingress.model import zone_name  # (model imports this package)

    return replace(value, zone=zone_name(ctx.ingress))


FEATURE = Feature(
    group="rate_limit",
    annotations=tuple(_FIELDS),
    scope=LOCATION,
    risk="Low",
    differs="none known; as in ingress-nginx, limit-rate and limit-rate-after need proxy-buffering on, and the "
    "allow-list exempts clients from limit-rps, limit-rpm and limit-connections, not from limit-rate",
    parse=parse,
    resolve=resolve,
)
