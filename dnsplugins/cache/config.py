"""cache's setup: the `cache` directive of a server block, read into a CacheConfig."""

from __future__ import annotations

from dataclasses import dataclass, field

from corefile import Dispenser
from dnsplugins import duration_arg
from dnsserver.plugin import Property, SetupContext, parse_properties, plugin_zones

DEFAULT_CAPACITY = 10000
SHARDS = 256  # CoreDNS shards its cache; capacity rounds the same way so the sizes read alike
MAX_SUCCESS_TTL, MAX_DENIAL_TTL, MIN_TTL = 3600, 1800, 5
SERVFAIL_TTL, MAX_SERVFAIL_TTL = 5.0, 300.0


def rounded_capacity(cap: int) -> int:
    return SHARDS * max(cap // SHARDS, 4)


@dataclass
class Settings:
    """One kind of answer's settings (`success` or `denial`): capacity, TTL bounds, zones not kept."""

    capacity: int = rounded_capacity(DEFAULT_CAPACITY)
    max_ttl: int = 0
    min_ttl: int = MIN_TTL
    disabled: list[str] = field(default_factory=list)  # zones where this kind is never stored; ["."] = all


@dataclass
class CacheConfig:
    """The `cache` directive parsed: zones, success and denial settings, prefetch, serve_stale."""

    zones: list[str]
    success: Settings
    denial: Settings
    prefetch: int = 0
    prefetch_window: float = 60.0
    prefetch_pct: int = 10
    stale: float = 0.0
    stale_verify: bool = False
    verify_timeout: float = 0.0
    stale_ttl: int = 0
    servfail: float = SERVFAIL_TTL
    keepttl: bool = False


def _int(d: Dispenser, text: str, what: str, low: int = 0) -> int:
    try:
        v = int(text)
    except ValueError:
        raise d.err(f"invalid {what} {text!r}") from None
    if v < low:
        raise d.err(f"{what} must be at least {low}")
    return v


def _settings(d: Dispenser, ctx: SetupContext, cfg: CacheConfig, prop: str, a: list[str]) -> None:
    """`success` and `denial`: CAPACITY [TTL [MINTTL]]."""
    s = cfg.success if prop == "success" else cfg.denial
    if not 1 <= len(a) <= 3:
        raise d.arg_err()
    s.capacity = rounded_capacity(_int(d, a[0], "capacity", 1))
    if len(a) > 1:
        s.max_ttl = _int(d, a[1], "TTL", 1)
    if len(a) > 2:
        s.min_ttl = _int(d, a[2], "minimum TTL")


def _prefetch(d: Dispenser, ctx: SetupContext, cfg: CacheConfig, prop: str, a: list[str]) -> None:
    """`prefetch AMOUNT [[DURATION] [PERCENTAGE%]]`."""
    if not 1 <= len(a) <= 3:
        raise d.arg_err()
    cfg.prefetch = _int(d, a[0], "prefetch amount", 1)
    for extra in a[1:]:
        if extra.endswith("%"):
            pct = _int(d, extra[:-1], "prefetch percentage")
            if not 10 <= pct <= 90:
                raise d.err("percentage should fall in range [10, 90]")
            cfg.prefetch_pct = pct
        else:
            cfg.prefetch_window = duration_arg(d, extra)
            if cfg.prefetch_window < 1:
                raise d.err("prefetch duration must be at least 1s")


def _serve_stale(d: Dispenser, ctx: SetupContext, cfg: CacheConfig, prop: str, a: list[str]) -> None:
    """`serve_stale [DURATION] [immediate|verify [TIMEOUT]] [TTL]`."""
    if len(a) > 4:
        raise d.arg_err()
    cfg.stale = 3600.0
    rest = a
    if rest and rest[0] not in ("immediate", "verify"):
        cfg.stale = duration_arg(d, rest[0])
        if cfg.stale < 0:
            raise d.err("invalid negative duration for serve_stale")
        rest = rest[1:]
    if rest:
        if rest[0] not in ("immediate", "verify"):
            raise d.err(f"invalid value for serve_stale refresh mode: {rest[0]}")
        cfg.stale_verify = rest[0] == "verify"
        rest = rest[1:]
        if cfg.stale_verify and rest and not rest[0].isdigit():
            cfg.verify_timeout = duration_arg(d, rest[0])
            rest = rest[1:]
    if rest:
        cfg.stale_ttl = _int(d, rest[0], "serve_stale response TTL")
        rest = rest[1:]
    if rest:
        raise d.arg_err()


def _servfail(d: Dispenser, ctx: SetupContext, cfg: CacheConfig, prop: str, a: list[str]) -> None:
    if len(a) != 1:
        raise d.arg_err()
    cfg.servfail = duration_arg(d, a[0])
    if cfg.servfail < 0:
        raise d.err("invalid negative ttl for servfail")
    if cfg.servfail > MAX_SERVFAIL_TTL:
        raise d.err("caching SERVFAIL responses over 5 minutes is not permitted")


def _disable(d: Dispenser, ctx: SetupContext, cfg: CacheConfig, prop: str, a: list[str]) -> None:
    if not a or a[0] not in ("success", "denial"):
        raise d.err("cache type for disable must be \"success\" or \"denial\"")
    s = cfg.success if a[0] == "success" else cfg.denial
    s.disabled = plugin_zones(a[1:], ctx) if a[1:] else ["."]


def _keepttl(d: Dispenser, ctx: SetupContext, cfg: CacheConfig, prop: str, a: list[str]) -> None:
    if a:
        raise d.arg_err()
    cfg.keepttl = True


PROPERTIES: dict[str, Property[CacheConfig]] = {
    "success": _settings,
    "denial": _settings,
    "prefetch": _prefetch,
    "serve_stale": _serve_stale,
    "servfail": _servfail,
    "disable": _disable,
    "keepttl": _keepttl,
}


def parse(d: Dispenser, ctx: SetupContext) -> CacheConfig:
    success = Settings(max_ttl=MAX_SUCCESS_TTL)
    denial = Settings(max_ttl=MAX_DENIAL_TTL)
    cfg = CacheConfig(zones=ctx.zones, success=success, denial=denial)
    d.next()
    args = d.remaining_args()
    if args:
        try:
            ttl = int(args[0])
        except ValueError:
            ttl = None
        if ttl is not None:
            if ttl <= 0:
                raise d.err(f"cache TTL can not be zero or negative: {ttl}")
            success.max_ttl = denial.max_ttl = ttl
            args = args[1:]
        if args:
            cfg.zones = plugin_zones(args, ctx)
    parse_properties(d, ctx, cfg, PROPERTIES)
    return cfg
