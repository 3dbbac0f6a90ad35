"""From a parsed Corefile to a runnable configuration: plugins set up, chains built, listeners planned.

Everything here happens before any DNS socket opens, so a bad Corefile fails fast with FILE:LINE.
"""

from __future__ import annotations

import ssl
from collections import defaultdict
from dataclasses import dataclass, field

from corefile import Corefile, CorefileError, Dispenser, ServerBlock, Token, ZoneAddr, parse_key
from corefile.zones import DEFAULT_PORTS
from dnsplugins import BY_NAME, PLUGINS
from dnsserver.chain import build_chain
from dnsserver.httpendpoints import HttpPlan
from dnsserver.plugin import (
    BlockCheck,
    ErrorReporter,
    FastStore,
    ListenerOptions,
    ListenOptions,
    Next,
    Observer,
    Plugin,
    QueryFilter,
    Readiness,
    ReadinessCheck,
    ReadinessMonitor,
    Relay,
    ServerInstance,
    SetupContext,
    StreamTimeouts,
)
from dnsserver.request import Request

# A listener is (transport, host, port); host "" means every address (CoreDNS's ":53").
ListenKey = tuple[str, str, int]

SUPPORTED_TRANSPORTS = {"dns", "tls", "https"}


@dataclass
class Block:
    """One server block set up: its zones, its plugins in chain order, and how queries may skip the chain."""

    keys: list[ZoneAddr]
    plugins: list[Plugin]
    chain: Next
    bind: list[str]
    file: str
    line: int
    metrics: bool = False  # a plugin wants its queries counted (prometheus)
    debug: bool = False  # chain exceptions are logged with their traceback (debug)
    # Non-IN classes are REFUSED unless a plugin that serves them (chaos, forward) is loaded.
    any_class: bool = False
    errors: ErrorReporter | None = None  # the block's error reporter (errors), which the relay path reports to
    tls: ssl.SSLContext | None = None  # from the tls plugin; required by tls:// keys
    # The same for https:// keys, with HTTP/2 in its ALPN; without it an https:// listener speaks plain HTTP.
    https_tls: ssl.SSLContext | None = None
    timeouts: StreamTimeouts | None = None  # from the timeouts plugin: its TCP and TLS connections'
    # The hot path: the plugin whose stored wire answers the server may send directly, and whether
    # addresses must be shuffled on the way. None when a plugin before it must see every query.
    fast_store: FastStore | None = None
    fast_shuffle: bool = False
    observers: list[Observer] = field(default_factory=list)  # told of every answer, on every path (log)
    # The relay path: a plugin that answers from bytes asynchronously (forward), when every plugin before
    # it may be skipped. Queries it declines still run the whole chain.
    relay: Relay | None = None
    relay_name: str = ""  # the relay's plugin name, for metrics and error reports
    chain_qtypes: frozenset[int] = frozenset()  # queries of these types always run the chain
    view: QueryFilter | None = None  # which queries the block serves (view); None: all

    def admits(self, req: Request) -> bool:
        return self.view is None or self.view.admits(req)

    def tls_for(self, transport: str) -> ssl.SSLContext | None:
        """The TLS context of this block's listeners of `transport` (None: plain)."""
        return self.https_tls if transport == "https" else self.tls

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.plugins]

    @property
    def logs_errors(self) -> bool:
        """An error reporter (errors) logs the chain's errors: the server need not."""
        return self.errors is not None


@dataclass
class Config:
    """A Corefile set up: its blocks, the listeners that serve them, HTTP endpoints, readiness checks."""

    corefile: Corefile
    blocks: list[Block]
    # Per listener, each zone's blocks in Corefile order: more than one only when views filter them.
    listeners: dict[ListenKey, dict[str, list[Block]]]
    http: HttpPlan
    readiness: list[Readiness] = field(default_factory=list)

    @property
    def plugins(self) -> list[Plugin]:
        return [p for b in self.blocks for p in b.plugins]


def _resolve_port(addr: ZoneAddr, dns_port: int) -> ZoneAddr:
    if addr.port is not None:
        return addr
    port = dns_port if addr.transport == "dns" else DEFAULT_PORTS[addr.transport]
    return ZoneAddr(addr.transport, addr.zone, port)


def _group(block: ServerBlock) -> dict[str, list[Token]]:
    grouped: dict[str, list[Token]] = defaultdict(list)
    for d in block.directives:
        if d.name not in BY_NAME:
            t = d.tokens[0]
            raise CorefileError(t.file, t.line, f"Error during parsing: Unknown directive '{d.name}'")
        grouped[d.name].extend(d.tokens)
    return grouped


def first_unskippable(plugins: list[Plugin]) -> tuple[Plugin | None, bool]:
    """The first in-chain plugin that must see queries, and whether a plugin before it shuffles answers.

    If it answers from wire bytes (cache, hosts, kubernetes), it is the block's hot-path store; if it
    relays bytes (forward), and nothing before it reorders replies, the block has a relay path.
    """
    shuffle = False
    for p in plugins:
        if not p.in_chain:
            continue
        if not p.fast_safe:
            return p, shuffle
        shuffle = shuffle or p.fast_shuffle
    return None, shuffle


def _keys(sb: ServerBlock, dns_port: int) -> tuple[list[ZoneAddr], list[Token]]:
    """The block's zone addresses (ports resolved), each with the token that named it."""
    keys: list[ZoneAddr] = []
    key_tokens: list[Token] = []
    for tok in sb.keys:
        for za in parse_key(tok):
            if za.transport not in SUPPORTED_TRANSPORTS:
                raise CorefileError(tok.file, tok.line, f"{za.transport}:// server blocks are not supported")
            keys.append(_resolve_port(za, dns_port))
            key_tokens.append(tok)
    return keys, key_tokens


def _setup_plugins(sb: ServerBlock, ctx: SetupContext) -> list[Plugin]:
    """Each plugin the block names, set up from its directives, in execution order."""
    grouped = _group(sb)
    plugins: list[Plugin] = []
    for spec in PLUGINS:
        tokens = grouped.get(spec.name)
        if not tokens:
            continue
        d = Dispenser(spec.name, tokens)
        if spec.once and len(starts := d.occurrence_starts()) > 1:
            raise CorefileError(starts[1].file, starts[1].line,
                                f"plugin/{spec.name}: this plugin can only be used once per Server Block")
        try:
            plugins.append(spec.module.setup(d, ctx))
        except CorefileError:
            raise
        except (ValueError, OSError) as e:
            t = tokens[0]
            raise CorefileError(t.file, t.line, f"plugin/{spec.name}: {e}") from e
    return plugins


def _make_block(sb: ServerBlock, keys: list[ZoneAddr], key_tokens: list[Token], plugins: list[Plugin]) -> Block:
    """The block with its plugins' roles worked out: listener options, error reporting, the hot path, the
    relay path. Each plugin is wired by what it implements, never by its name."""
    opts = ListenOptions()
    for p in plugins:
        if isinstance(p, ListenerOptions):
            p.listener_options(opts)
    block = Block(keys=keys, plugins=plugins, chain=build_chain(plugins), bind=opts.bind, file=sb.file,
                  line=sb.line, tls=opts.tls, https_tls=opts.https_tls, timeouts=opts.timeouts)
    block.metrics = any(p.counts_queries for p in plugins)
    block.debug = any(p.debugs for p in plugins)
    block.any_class = any(p.any_class for p in plugins)
    block.errors = next((p for p in plugins if isinstance(p, ErrorReporter)), None)
    if block.tls is None and any(k.transport == "tls" for k in keys):
        tok = key_tokens[next(i for i, k in enumerate(keys) if k.transport == "tls")]
        raise CorefileError(tok.file, tok.line, "tls:// server blocks need the tls plugin (tls CERT KEY)")
    first, shuffle = first_unskippable(plugins)
    block.chain_qtypes = frozenset().union(*(p.sees_qtypes for p in plugins if p.in_chain))
    if isinstance(first, FastStore):
        block.fast_store, block.fast_shuffle = first, shuffle
    elif isinstance(first, Relay) and not shuffle:
        block.relay, block.relay_name = first, first.name  # loadbalance would reorder a relayed reply: chain
    block.observers = [p for p in plugins if isinstance(p, Observer)]
    views = [p for p in plugins if isinstance(p, QueryFilter)]
    if views:
        block.view = views[0]  # the view plugin is once per block: it says so itself
    return block


def _claim(listeners: dict[ListenKey, dict[str, list[Block]]], key_lines: dict[tuple[str, str, int],
           list[tuple[str, Token]]], block: Block, key_tokens: list[Token]) -> None:
    """Add the block's zones to the listeners they need; a zone served twice on one address is an error,
    unless views filter all but one of the blocks (CoreDNS checks only unfiltered blocks against others)."""
    hosts = block.bind or [""]
    for za, tok in zip(block.keys, key_tokens, strict=True):
        claims = key_lines[(za.transport, za.zone, za.port or 0)]
        for other_host, _ in claims:
            if block.view is not None and other_host in hosts:
                continue
            if other_host == "" or "" in hosts or other_host in hosts:
                where = f"{za.transport}://{za.zone}:{za.port}"
                if other_host in hosts:
                    msg = f"cannot serve {where} - it is already defined"
                else:
                    msg = f"cannot serve {where} - zone overlap listener capacity with {other_host or '*'}"
                raise CorefileError(tok.file, tok.line, msg)
        for h in hosts:
            if block.view is None:
                claims.append((h, tok))  # a filtered block claims nothing: others may share its zone
            listeners[(za.transport, h, za.port or 0)].setdefault(za.zone, []).append(block)


def build(corefile: Corefile, dns_port: int, instance: ServerInstance | None = None) -> Config:
    """Set up every block's plugins and plan the listeners. Raises CorefileError naming FILE:LINE."""
    plan = HttpPlan()
    blocks: list[Block] = []
    listeners: dict[ListenKey, dict[str, list[Block]]] = defaultdict(dict)
    key_lines: dict[tuple[str, str, int], list[tuple[str, Token]]] = defaultdict(list)

    for sb in corefile.blocks:
        keys, key_tokens = _keys(sb, dns_port)
        ctx = SetupContext(keys=keys, corefile=sb.file, http=plan, instance=instance)
        block = _make_block(sb, keys, key_tokens, _setup_plugins(sb, ctx))
        ctx.block = block
        for p in block.plugins:
            if isinstance(p, BlockCheck):
                p.check_block(block)
        blocks.append(block)
        _claim(listeners, key_lines, block, key_tokens)

    cfg = Config(corefile=corefile, blocks=blocks, listeners=dict(listeners), http=plan)
    _watch_readiness(cfg)
    return cfg


def _watch_readiness(cfg: Config) -> None:
    """Give the readiness monitors (ready) the checks of every block that loads one."""
    monitors = [[p for p in b.plugins if isinstance(p, ReadinessMonitor)] for b in cfg.blocks]
    cfg.readiness = [(p.name, p.is_ready) for b, m in zip(cfg.blocks, monitors, strict=True) if m
                     for p in b.plugins if isinstance(p, ReadinessCheck)]
    for m in monitors:
        for p in m:
            p.monitor(cfg.readiness)
