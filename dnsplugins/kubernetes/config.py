"""The kubernetes directive's options, parsed and checked (pure: no connection is made here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from corefile import Dispenser
from dnsplugins import duration_arg
from dnsserver.plugin import Fallthrough, Property, SetupContext, parse_properties, plugin_zones

POD_MODES = ("disabled", "insecure", "verified")
DEFAULT_TTL = 5
MAX_TTL = 3600


def is_reverse(zone: str) -> bool:
    return zone.endswith("in-addr.arpa.") or zone.endswith("ip6.arpa.")


@dataclass
class KubernetesConfig:
    """The `kubernetes` directive parsed."""

    zones: list[str]
    endpoint: str | None = None
    tls: tuple[str, str, str] | None = None  # client cert, key, CA for `endpoint`
    kubeconfig: str | None = None
    context: str | None = None
    manifests: str | None = None  # serve from a directory of manifests instead of an API server
    namespaces: list[str] = field(default_factory=list)
    namespace_labels: str = ""
    labels: str = ""
    pods: str = "disabled"
    endpoint_pod_names: bool = False
    ttl: int = DEFAULT_TTL
    noendpoints: bool = False
    fallthrough: Fallthrough = field(default_factory=Fallthrough)
    ignore_empty_service: bool = False
    startup_timeout: float = 5.0
    multicluster: list[str] = field(default_factory=list)  # zones served from ServiceImports

    @property
    def primary(self) -> str:
        """The first forward zone: PTR targets are always built in it."""
        return next(z for z in self.zones if not is_reverse(z))


# Options CoreDNS accepts that tune client-go; they have no counterpart here and are accepted so
# existing Corefiles load (each takes one argument).
CLIENT_TUNING = ("apiserver_qps", "apiserver_burst", "apiserver_max_inflight")


def _n_args(d: Dispenser, args: list[str], *counts: int) -> None:
    if len(args) not in counts:
        raise d.arg_err()


def _some_args(d: Dispenser, args: list[str]) -> None:
    if not args:
        raise d.arg_err()


def _endpoint(d: Dispenser, ctx: SetupContext, cfg: KubernetesConfig, prop: str, args: list[str]) -> None:
    _some_args(d, args)
    if not args[0].startswith(("http://", "https://")):
        raise d.err(f"endpoint {args[0]!r} must start with http:// or https://")
    cfg.endpoint = args[0]  # CoreDNS uses the first; more are deprecated


def _tls(d: Dispenser, ctx: SetupContext, cfg: KubernetesConfig, prop: str, args: list[str]) -> None:
    _n_args(d, args, 3)
    cfg.tls = (ctx.path(args[0]), ctx.path(args[1]), ctx.path(args[2]))


def _kubeconfig(d: Dispenser, ctx: SetupContext, cfg: KubernetesConfig, prop: str, args: list[str]) -> None:
    _n_args(d, args, 1, 2)
    cfg.kubeconfig = ctx.path(args[0])
    cfg.context = args[1] if len(args) == 2 else None


def _manifests(d: Dispenser, ctx: SetupContext, cfg: KubernetesConfig, prop: str, args: list[str]) -> None:
    _n_args(d, args, 1)
    cfg.manifests = ctx.path(args[0])


def _namespaces(d: Dispenser, ctx: SetupContext, cfg: KubernetesConfig, prop: str, args: list[str]) -> None:
    _some_args(d, args)
    cfg.namespaces = args
    if cfg.namespace_labels:
        raise d.err("namespaces and namespace_labels cannot both be set")


def _labels(d: Dispenser, ctx: SetupContext, cfg: KubernetesConfig, prop: str, args: list[str]) -> None:
    """`labels` and `namespace_labels`: a selector, its words joined again."""
    _some_args(d, args)
    setattr(cfg, prop, " ".join(args))
    if cfg.namespaces and cfg.namespace_labels:
        raise d.err("namespaces and namespace_labels cannot both be set")


def _pods(d: Dispenser, ctx: SetupContext, cfg: KubernetesConfig, prop: str, args: list[str]) -> None:
    if len(args) != 1 or args[0] not in POD_MODES:
        raise d.err(f"pods must be one of {', '.join(POD_MODES)}, not {' '.join(args) or 'nothing'}")
    cfg.pods = args[0]


def _flag(d: Dispenser, ctx: SetupContext, cfg: KubernetesConfig, prop: str, args: list[str]) -> None:
    """`endpoint_pod_names`, `noendpoints`: no arguments, sets the option of that name."""
    _n_args(d, args, 0)
    setattr(cfg, prop, True)


def ttl_arg(d: Dispenser, args: list[str]) -> int:
    """A `ttl TTL` property's value, 0 to 3600 (kubernetes, k8s_external)."""
    _n_args(d, args, 1)
    try:
        ttl = int(args[0])
    except ValueError:
        raise d.err(f"ttl must be a number, not {args[0]!r}") from None
    if not 0 <= ttl <= MAX_TTL:
        raise d.err(f"ttl must be in range [0, {MAX_TTL}]: {ttl}")
    return ttl


def _ttl(d: Dispenser, ctx: SetupContext, cfg: KubernetesConfig, prop: str, args: list[str]) -> None:
    cfg.ttl = ttl_arg(d, args)


def _fallthrough(d: Dispenser, ctx: SetupContext, cfg: KubernetesConfig, prop: str, args: list[str]) -> None:
    cfg.fallthrough.set(args, ctx)


def _ignore(d: Dispenser, ctx: SetupContext, cfg: KubernetesConfig, prop: str, args: list[str]) -> None:
    # A bare `ignore` is accepted silently, as CoreDNS does.
    if args and args[0] == "empty_service":
        cfg.ignore_empty_service = True
    elif args:
        raise d.err(f"unable to parse ignore value: {args[0]!r}")


def _startup_timeout(d: Dispenser, ctx: SetupContext, cfg: KubernetesConfig, prop: str, args: list[str]) -> None:
    _n_args(d, args, 1)
    cfg.startup_timeout = duration_arg(d, args[0])


def _multicluster(d: Dispenser, ctx: SetupContext, cfg: KubernetesConfig, prop: str, args: list[str]) -> None:
    # CoreDNS takes the zones given, or none (not the block's); the plugin must be authoritative for them.
    zones = plugin_zones(args, ctx) if args else []
    for z in zones:
        if z not in cfg.zones:
            raise d.err(f"multicluster zone {z!r} is not one of the plugin's zones ({', '.join(cfg.zones)})")
    cfg.multicluster = zones


def _client_tuning(d: Dispenser, ctx: SetupContext, cfg: KubernetesConfig, prop: str, args: list[str]) -> None:
    _n_args(d, args, 1)


PROPERTIES: dict[str, Property[KubernetesConfig]] = {
    "endpoint": _endpoint,
    "tls": _tls,
    "kubeconfig": _kubeconfig,
    "manifests": _manifests,
    "namespaces": _namespaces,
    "namespace_labels": _labels,
    "labels": _labels,
    "pods": _pods,
    "endpoint_pod_names": _flag,
    "ttl": _ttl,
    "noendpoints": _flag,
    "fallthrough": _fallthrough,
    "ignore": _ignore,
    "startup_timeout": _startup_timeout,
    "multicluster": _multicluster,
    **dict.fromkeys(CLIENT_TUNING, _client_tuning),
}


def parse(d: Dispenser, ctx: SetupContext) -> KubernetesConfig:
    d.next()
    cfg = KubernetesConfig(zones=plugin_zones(d.remaining_args(), ctx))
    if all(is_reverse(z) for z in cfg.zones):
        raise d.err("non-reverse zone name must be used")
    parse_properties(d, ctx, cfg, PROPERTIES)
    return cfg
