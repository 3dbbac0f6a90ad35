"""The kubernetes directive's options, parsed and checked (pure: no connection is made here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from corefile import Dispenser
from dnsserver.durations import parse_duration
from dnsserver.plugin import Fallthrough, SetupContext, plugin_zones

POD_MODES = ("disabled", "insecure", "verified")
DEFAULT_TTL = 5
MAX_TTL = 3600


def is_reverse(zone: str) -> bool:
    return zone.endswith("in-addr.arpa.") or zone.endswith("ip6.arpa.")


@dataclass
class KubernetesConfig:
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

    @property
    def primary(self) -> str:
        """The first forward zone: PTR targets are always built in it."""
        return next(z for z in self.zones if not is_reverse(z))


# Options CoreDNS accepts that tune client-go; they have no counterpart here and are accepted so
# existing Corefiles load (each takes one argument).
CLIENT_TUNING = ("apiserver_qps", "apiserver_burst", "apiserver_max_inflight")


def parse(d: Dispenser, ctx: SetupContext) -> KubernetesConfig:
    d.next()
    cfg = KubernetesConfig(zones=plugin_zones(d.remaining_args(), ctx))
    if all(is_reverse(z) for z in cfg.zones):
        raise d.err("non-reverse zone name must be used")
    while d.next_block():
        prop, args = d.val(), d.remaining_args()
        if prop == "endpoint":
            if not args:
                raise d.arg_err()
            if not args[0].startswith(("http://", "https://")):
                raise d.err(f"endpoint {args[0]!r} must start with http:// or https://")
            cfg.endpoint = args[0]  # CoreDNS uses the first; more are deprecated
        elif prop == "tls":
            if len(args) != 3:
                raise d.arg_err()
            cfg.tls = (ctx.path(args[0]), ctx.path(args[1]), ctx.path(args[2]))
        elif prop == "kubeconfig":
            if len(args) not in (1, 2):
                raise d.arg_err()
            cfg.kubeconfig = ctx.path(args[0])
            cfg.context = args[1] if len(args) == 2 else None
        elif prop == "manifests":
            if len(args) != 1:
                raise d.arg_err()
            cfg.manifests = ctx.path(args[0])
        elif prop == "namespaces":
            if not args:
                raise d.arg_err()
            cfg.namespaces = args
            if cfg.namespace_labels:
                raise d.err("namespaces and namespace_labels cannot both be set")
        elif prop in ("namespace_labels", "labels"):
            if not args:
                raise d.arg_err()
            setattr(cfg, prop, " ".join(args))
            if cfg.namespaces and cfg.namespace_labels:
                raise d.err("namespaces and namespace_labels cannot both be set")
        elif prop == "pods":
            if len(args) != 1 or args[0] not in POD_MODES:
                raise d.err(f"pods must be one of {', '.join(POD_MODES)}, not {' '.join(args) or 'nothing'}")
            cfg.pods = args[0]
        elif prop == "endpoint_pod_names":
            if args:
                raise d.arg_err()
            cfg.endpoint_pod_names = True
        elif prop == "ttl":
            if len(args) != 1:
                raise d.arg_err()
            try:
                ttl = int(args[0])
            except ValueError:
                raise d.err(f"ttl must be a number, not {args[0]!r}") from None
            if not 0 <= ttl <= MAX_TTL:
                raise d.err(f"ttl must be in range [0, {MAX_TTL}]: {ttl}")
            cfg.ttl = ttl
        elif prop == "noendpoints":
            if args:
                raise d.arg_err()
            cfg.noendpoints = True
        elif prop == "fallthrough":
            cfg.fallthrough.set(args, ctx)
        elif prop == "ignore":
            # A bare `ignore` is accepted silently, as CoreDNS does.
            if args and args[0] == "empty_service":
                cfg.ignore_empty_service = True
            elif args:
                raise d.err(f"unable to parse ignore value: {args[0]!r}")
        elif prop == "startup_timeout":
            if len(args) != 1:
                raise d.arg_err()
            try:
                cfg.startup_timeout = parse_duration(args[0])
            except ValueError as e:
                raise d.err(str(e)) from None
        elif prop in CLIENT_TUNING:
            if len(args) != 1:
                raise d.arg_err()
        else:
            raise d.unknown_property()
    return cfg
