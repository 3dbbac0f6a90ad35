"""Parsing `forward` directives: one ForwardConfig per occurrence, in Corefile order.

Pure apart from reading the files the directive names (resolv.conf-style TOs, TLS material), so
that every mistake is reported at load time as "FILE:LINE - plugin/forward: ...".
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field

from corefile import Dispenser, normalize_zone, reverse_zones
from dnsplugins import duration_arg
from dnsserver.durations import go_duration
from dnsserver.logs import plugin_log
from dnsserver.plugin import Property, SetupContext, parse_properties, plugin_zones

log = plugin_log("forward")

MAX_UPSTREAMS = 15
DEFAULT_EXPIRE = 10.0
DEFAULT_READ_TIMEOUT = 2.0
DEFAULT_HC_INTERVAL = 0.5
DEFAULT_MAX_FAILS = 2
DEFAULT_PORTS = {"dns": 53, "tls": 853}
# Schemes that parse as a TO but that this forwarder does not speak (CoreDNS has DoH, gRPC, QUIC).
OTHER_SCHEMES = ("https", "grpc", "quic", "https3")

# miekg/dns's StringToRcode: what `next` and `failover` accept (case-insensitively).
RCODES = {
    "NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "NOTIMPL": 4, "REFUSED": 5,
    "YXDOMAIN": 6, "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10, "BADSIG": 16, "BADVERS": 16,
    "BADKEY": 17, "BADTIME": 18, "BADMODE": 19, "BADNAME": 20, "BADALG": 21, "BADTRUNC": 22,
    "BADCOOKIE": 23,
}
POLICIES = ("random", "round_robin", "sequential")
# The properties that take no argument, and the ForwardConfig field each one turns on.
FLAGS = {
    "force_tcp": "force_tcp", "prefer_udp": "prefer_udp", "next_on_nodata": "next_on_nodata",
    "failfast_all_unhealthy_upstreams": "failfast_all_unhealthy",
}


@dataclass(frozen=True)
class UpstreamSpec:
    """One TO: where to send, how, and (DoT) which name the certificate must carry."""

    host: str
    port: int
    transport: str = "dns"  # "dns" (UDP/TCP) or "tls" (DNS over TLS)
    server_name: str = ""  # per-upstream `tls://IP%NAME`; the stanza's tls_servername wins if set

    @property
    def addr(self) -> str:
        """host:port as CoreDNS prints it (the `to` label of the metrics)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass
class ForwardConfig:
    """One `forward FROM TO... { }` stanza."""

    from_zone: str = "."
    upstreams: list[UpstreamSpec] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    force_tcp: bool = False
    prefer_udp: bool = False
    expire: float = DEFAULT_EXPIRE
    max_age: float = 0.0  # 0: connections live as long as they are used within `expire`
    max_idle_conns: int = 0  # 0: no cap on idle pooled connections per upstream
    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_fails: int = DEFAULT_MAX_FAILS
    max_connect_attempts: int | None = None  # None: 2 x the number of upstreams; 0: no cap
    tls_args: list[str] = field(default_factory=list)
    tls_servername: str = ""
    policy: str = "random"
    hc_interval: float = DEFAULT_HC_INTERVAL
    hc_recursion_desired: bool = True
    hc_domain: str = "."
    max_concurrent: int = 0
    next_rcodes: list[int] = field(default_factory=list)
    failover_rcodes: list[int] = field(default_factory=list)
    failfast_all_unhealthy: bool = False
    next_on_nodata: bool = False
    source_address: str | None = None
    tls_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    file: str = field(default="", compare=False)
    line: int = field(default=0, compare=False)

    @property
    def connect_attempts(self) -> int:
        """The per-query cap on tries; 0 means none (only the deadline stops the query)."""
        if self.max_connect_attempts is None:
            return 2 * len(self.upstreams)
        return self.max_connect_attempts


def _goquote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _split_transport(text: str) -> tuple[str, str]:
    for scheme in ("dns", "tls", *OTHER_SCHEMES):
        prefix = scheme + "://"
        if text.startswith(prefix):
            return scheme, text[len(prefix):]
    return "dns", text


def _split_server_name(text: str) -> tuple[str, str]:
    """`IP%NAME[:PORT]` -> (`IP[:PORT]`, NAME); anything without `%` is returned unchanged."""
    if "%" not in text:
        return text, ""
    cut = text.rindex("%")
    host, name = text[:cut], text[cut + 1:]
    if host.startswith("["):
        host += "]"
    if ":" in name:
        colon = name.rindex(":")
        host += name[colon:]
        name = name[:colon].rstrip("]")
    return host, name


def _split_host_port(text: str) -> tuple[str, str] | None:
    """Go's net.SplitHostPort: ("host", "port") for `h:p` / `[v6]:p`, None when there is no port."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1:].startswith(":"):
            return None
        return text[1:end], text[end + 2:]
    if text.count(":") != 1:
        return None
    host, port = text.split(":")
    return host, port


def read_resolv_conf(path: str) -> list[str]:
    """The `nameserver` addresses of a resolv.conf-style file (raises OSError if unreadable)."""
    servers: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            fields = raw.split("#", 1)[0].split(";", 1)[0].split()
            if len(fields) >= 2 and fields[0] == "nameserver" and _is_ip(fields[1]):
                servers.append(fields[1])
    return servers


def parse_to(text: str, ctx: SetupContext) -> list[UpstreamSpec]:
    """One TO argument: an address (with optional scheme, port, %servername) or a resolv.conf file."""
    trans, rest = _split_transport(text)
    hostport, server_name = _split_server_name(rest)
    split = _split_host_port(hostport)
    if split is None:
        host, port_text = hostport.strip("[]"), ""
    else:
        host, port_text = split
    if not _is_ip(host):
        try:
            servers = read_resolv_conf(ctx.path(rest))
        except OSError:
            raise ValueError(f"not an IP address or file: {_goquote(rest)}") from None
        # A file's nameservers are plain DNS on port 53, whatever scheme was written before it.
        return [UpstreamSpec(ip.split("%", 1)[0], 53) for ip in servers]
    if trans in OTHER_SCHEMES:
        raise ValueError(f"'{trans}' is not supported as a destination protocol in forward: {text}")
    if port_text:
        if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
            raise ValueError(f"not an IP address or file: {_goquote(rest)}")
        port = int(port_text)
    else:
        port = DEFAULT_PORTS[trans]
    return [UpstreamSpec(host.split("%", 1)[0], port, trans, server_name if trans == "tls" else "")]


def _uint(d: Dispenser, text: str, bits: int = 32) -> int:
    if not (text.isascii() and text.isdigit()):
        raise d.err(f"strconv.ParseUint: parsing {_goquote(text)}: invalid syntax")
    n = int(text)
    if n >= 1 << bits:
        raise d.err(f"strconv.ParseUint: parsing {_goquote(text)}: value out of range")
    return n


def _atoi(d: Dispenser, text: str) -> int:
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit()):
        raise d.err(f"strconv.Atoi: parsing {_goquote(text)}: invalid syntax")
    return int(text)


def _one_arg(d: Dispenser, args: list[str], i: int = 0) -> str:
    """The `i`th argument of the line (further ones are ignored, as CoreDNS's NextArg does)."""
    if len(args) <= i:
        raise d.arg_err()
    return args[i]


def _rcodes(d: Dispenser, args: list[str], failover: bool) -> list[int]:
    if not args:
        raise d.arg_err()
    out: list[int] = []
    for a in args:
        rc = RCODES.get(a.upper())
        if rc is None:
            raise d.err(f"{a} is not a valid rcode")
        if failover and rc == 0:
            raise d.err("NoError cannot be used in failover")
        out.append(rc)
    return out


def _is_domain_name(name: str) -> bool:
    """miekg/dns's IsDomainName, roughly: labels of 1..63 octets, 255 at most in all."""
    if name == ".":
        return True
    body = name[:-1] if name.endswith(".") else name
    labels = body.split(".")
    return 0 < len(body) < 255 and all(0 < len(lb) <= 63 for lb in labels)


def _from_zone(d: Dispenser, text: str) -> str:
    if "/" in text:
        try:
            zones = reverse_zones(text)
        except ValueError:
            zones = [normalize_zone(text)]
        if len(zones) > 1:
            log.warning("Unsupported CIDR notation: '%s' expands to multiple zones. "
                        "Using only '%s'.", text, zones[0])
        return zones[0]
    return normalize_zone(text)


def _tls_context(d: Dispenser, args: list[str]) -> ssl.SSLContext:
    """CoreDNS's `tls` argument forms: none, CA, CERT KEY, CERT KEY CA (a client-side context)."""
    cert = key = ca = None
    if len(args) == 1:
        ca = args[0]
    elif len(args) >= 2:
        cert, key = args[0], args[1]
        ca = args[2] if len(args) == 3 else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is not None:
        try:
            with open(ca, encoding="ascii", errors="replace") as f:
                pem = f.read()
        except OSError as e:
            raise d.err(f"error reading {ca}: {e.strerror.lower() if e.strerror else e}") from None
        try:
            # Only the given CA is trusted, as Go does when RootCAs is set.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_verify_locations(cadata=pem)
        except (ssl.SSLError, ValueError):
            raise d.err(f"could not read root certs from {ca}") from None
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            reason = e.strerror.lower() if e.strerror else str(e)  # (ssl.SSLError is an OSError)
            raise d.err(f"could not load TLS cert: {reason}") from None
    return context


def parse(d: Dispenser, ctx: SetupContext) -> list[ForwardConfig]:
    """Every `forward` occurrence of the block, in Corefile order."""
    out: list[ForwardConfig] = []
    while d.next():
        out.append(parse_stanza(d, ctx))
    return out


def parse_stanza(d: Dispenser, ctx: SetupContext) -> ForwardConfig:
    directive = d.token()
    cfg = ForwardConfig(file=directive.file, line=directive.line)
    if not d.next_arg():
        raise d.arg_err()
    cfg.from_zone = _from_zone(d, d.val())
    to = d.remaining_args()
    if not to:
        raise d.arg_err()
    specs: list[UpstreamSpec] = []
    for t in to:
        try:
            specs.extend(parse_to(t, ctx))
        except ValueError as e:
            raise d.err(str(e)) from None
    if not specs:
        raise d.err("no nameservers found")
    parse_properties(d, ctx, cfg, PROPERTIES)
    if len(specs) > MAX_UPSTREAMS:
        raise d.err_at(directive, f"more than {MAX_UPSTREAMS} TOs configured: {len(specs)}")
    if cfg.max_age and cfg.max_age < cfg.expire:
        raise d.err_at(directive, f"max_age ({go_duration(cfg.max_age)}) must not be less than "
                                  f"expire ({go_duration(cfg.expire)})")
    for s in specs:
        if s.transport == "tls" and s.server_name and cfg.tls_servername:
            raise d.err_at(directive, f"both forward ('{cfg.tls_servername}') and proxy level "
                                      f"('{s.server_name}') TLS servernames are set for upstream proxy "
                                      f"'tls://{s.addr}'")
    cfg.upstreams = specs
    if any(s.transport == "tls" for s in specs) and cfg.tls_context is None:
        cfg.tls_context = _tls_context(d, [])
    return cfg


def _except(d: Dispenser, ctx: SetupContext, cfg: ForwardConfig, prop: str, names: list[str]) -> None:
    if not names:
        raise d.arg_err()
    # A CIDR stands for all its reverse zones here (FROM, by contrast, can only be one zone).
    cfg.ignored.extend(z for z in plugin_zones(names, ctx) if z not in cfg.ignored)


def _flag(d: Dispenser, ctx: SetupContext, cfg: ForwardConfig, prop: str, args: list[str]) -> None:
    if args:
        raise d.arg_err()
    setattr(cfg, FLAGS[prop], True)


def _count(d: Dispenser, ctx: SetupContext, cfg: ForwardConfig, prop: str, args: list[str]) -> None:
    """`max_fails`, `max_connect_attempts`: an unsigned number."""
    setattr(cfg, prop, _uint(d, _one_arg(d, args)))


def _span(d: Dispenser, ctx: SetupContext, cfg: ForwardConfig, prop: str, args: list[str]) -> None:
    """`expire`, `max_age`, `read_timeout`: a duration, not negative."""
    value = duration_arg(d, _one_arg(d, args))
    if value < 0:
        raise d.err(f"{prop} can't be negative: {go_duration(value)}")
    setattr(cfg, prop, value)


def _limit(d: Dispenser, ctx: SetupContext, cfg: ForwardConfig, prop: str, args: list[str]) -> None:
    """`max_idle_conns`, `max_concurrent`: a number, not negative."""
    n = _atoi(d, _one_arg(d, args))
    if n < 0:
        raise d.err(f"{prop} can't be negative: {n}")
    setattr(cfg, prop, n)


def _policy(d: Dispenser, ctx: SetupContext, cfg: ForwardConfig, prop: str, args: list[str]) -> None:
    name = _one_arg(d, args)
    if name not in POLICIES:
        raise d.err(f"unknown policy '{name}'")
    cfg.policy = name


def _tls(d: Dispenser, ctx: SetupContext, cfg: ForwardConfig, prop: str, args: list[str]) -> None:
    if len(args) > 3:
        raise d.arg_err()
    cfg.tls_args = [ctx.path(a) for a in args]
    cfg.tls_context = _tls_context(d, cfg.tls_args)


def _tls_servername(d: Dispenser, ctx: SetupContext, cfg: ForwardConfig, prop: str, args: list[str]) -> None:
    cfg.tls_servername = _one_arg(d, args)


def _next(d: Dispenser, ctx: SetupContext, cfg: ForwardConfig, prop: str, args: list[str]) -> None:
    cfg.next_rcodes = _rcodes(d, args, failover=False)


def _failover(d: Dispenser, ctx: SetupContext, cfg: ForwardConfig, prop: str, args: list[str]) -> None:
    cfg.failover_rcodes = _rcodes(d, args, failover=True)


def _source_address(d: Dispenser, ctx: SetupContext, cfg: ForwardConfig, prop: str, args: list[str]) -> None:
    text = _one_arg(d, args)
    if not _is_ip(text) or "%" in text:
        raise d.err(f"source_address: invalid IP address '{text}'")
    cfg.source_address = str(ipaddress.ip_address(text))


def _health_check(d: Dispenser, ctx: SetupContext, cfg: ForwardConfig, prop: str, args: list[str]) -> None:
    """`health_check DURATION [no_rec] [domain FQDN]`."""
    interval = duration_arg(d, _one_arg(d, args))
    if interval < 0:
        raise d.err(f"health_check can't be negative: {round(interval * 1e9)}")
    cfg.hc_interval = interval
    cfg.hc_domain = "."
    i = 1
    while i < len(args):
        opt = args[i]
        if opt == "no_rec":
            cfg.hc_recursion_desired = False
        elif opt == "domain":
            i += 1
            name = _one_arg(d, args, i)
            if not _is_domain_name(name):
                raise d.err(f"health_check: invalid domain name {name}")
            cfg.hc_domain = normalize_zone(name)
        else:
            raise d.err(f"health_check: unknown option {opt}")
        i += 1


# Each property of a forward block, by name (read by the Dispenser helper, parse_properties).
PROPERTIES: dict[str, Property[ForwardConfig]] = {
    "except": _except,
    **dict.fromkeys(FLAGS, _flag),
    "max_fails": _count,
    "max_connect_attempts": _count,
    "health_check": _health_check,
    "expire": _span,
    "max_age": _span,
    "read_timeout": _span,
    "max_idle_conns": _limit,
    "max_concurrent": _limit,
    "policy": _policy,
    "tls": _tls,
    "tls_servername": _tls_servername,
    "next": _next,
    "failover": _failover,
    "source_address": _source_address,
}
