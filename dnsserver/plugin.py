"""The plugin protocol: what a plugin module provides and what the server gives it.

Records in a reply may be shared with other replies (hosts and kubernetes build them once per change):
a plugin that changes a record (cache's TTL rewrite, rewrite's name mapping) must copy it first.

A plugin module exports `setup(d: Dispenser, ctx: SetupContext) -> Plugin`, which parses its
directive (all occurrences in one server block) and returns an instance. A plugin in the chain
implements `serve`: answer (return a reply), pass on (`return await next(req)`), or raise, which
the server turns into SERVFAIL. Config-only plugins (bind, health, ready, prometheus, reload) set
`in_chain = False`: they configure the server and are never called per query.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar, runtime_checkable

from dnslib import DNSRecord

from corefile import normalize_zone, reverse_zones
from dnsserver.request import Request

if TYPE_CHECKING:
    from corefile import Dispenser, ZoneAddr
    from dnsserver.httpendpoints import HttpPlan
    from dnsserver.wire.query import FastQuery
    from dnsserver.wire.views import QueryView, WireReply

Next = Callable[[Request], Awaitable[DNSRecord | None]]
A = TypeVar("A")
C = TypeVar("C")
# One property of a directive's block: (dispenser, context, config being built, property name, arguments).
Property = Callable[["Dispenser", "SetupContext", C, str, list[str]], None]


class PluginError(Exception):
    """An exception raised inside a plugin, tagged with the plugin's name (logged as plugin/NAME)."""

    def __init__(self, plugin: str, cause: BaseException) -> None:
        super().__init__(f"plugin/{plugin}: {cause}")
        self.plugin = plugin
        self.cause = cause


class Plugin:
    """Base class. Subclasses set `name` and override `serve` (or set `in_chain = False`)."""

    name: ClassVar[str] = ""
    in_chain: ClassVar[bool] = True
    # True if the server may answer from a later plugin's stored wire answers (the hot path) without
    # calling this plugin: it would only pass such a query on unchanged (errors, any, chaos, ...).
    fast_safe: bool = False
    # True if, on the hot path, the addresses in a stored answer must be shuffled (loadbalance).
    fast_shuffle: bool = False
    # Query types a skippable plugin must still see (any: ANY; loop: its HINFO probe). Paths that skip
    # the chain (the relay path) hand such queries to the chain instead.
    sees_qtypes: ClassVar[frozenset[int]] = frozenset()
    # True if its block must accept classes other than IN (chaos, forward): others are REFUSED.
    any_class: ClassVar[bool] = False
    # True if its block's queries are to be counted in the server's metrics (prometheus).
    counts_queries: ClassVar[bool] = False
    # True if the server is to log the digest of each configuration it starts serving (reload).
    announces_config: ClassVar[bool] = False
    # True if an exception in its block's chain is to be logged with its traceback, not only turned into
    # SERVFAIL (debug).
    debugs: ClassVar[bool] = False

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        return await next(req)

    async def start(self) -> None:
        """Called once the whole configuration is built, in chain order, before listeners open."""

    async def stop(self) -> None:
        """Called when this configuration is replaced (reload) or the process exits, in reverse order."""

    async def on_shutdown(self) -> None:
        """Called only when the process is shutting down, before listeners close (health's lameduck)."""


# The roles a plugin may take besides `serve`. The config builder wires each plugin by the roles it
# implements (isinstance against these protocols), never by its name.


@runtime_checkable
class FastStore(Protocol):
    """Answers from stored wire bytes, which the hot path sends without running the chain (cache, hosts)."""

    @property
    def name(self) -> str: ...

    def fast_answer(self, data: bytes, q: FastQuery, key: bytes, client: tuple[str, int], proto: str,
                    shuffle: bool, max_size: int) -> bytes | None: ...


# What a relay calls with its outcome: the reply's bytes (with the query's ID and no OPT record: the
# server adds the client's), the exception that left no reply (the client gets SERVFAIL), or None when
# the relay handed the query on (the server runs the chain for it).
RelayDone = Callable[[A, "bytes | Exception | None"], None]


class RelayStart(Protocol):
    """Relays `query` and calls `done(arg, outcome)` exactly once, from the event loop, however the relay
    goes: without a task in the common case, in a task of the relay's own when it must retry or wait."""

    def __call__(self, query: bytes, proto: str, done: RelayDone[A], arg: A, /) -> None: ...


@runtime_checkable
class Relay(Protocol):
    """Answers a query given as bytes with reply bytes, parsing neither (forward): the relay path."""

    @property
    def name(self) -> str: ...

    def relay_starter(self, query: bytes) -> RelayStart | None:
        """What relays `query`, and every query with the same question bytes (the server remembers it per
        question), or None: not for the relay path (the chain answers)."""
        ...


@runtime_checkable
class QueryFilter(Protocol):
    """Decides per query whether its block serves it (view). Blocks that share a zone and port are tried
    in Corefile order, the first that admits the query serving it; a block without a filter admits all.
    A zone with a filtered block is never answered on the hot or relay path, whose routes are learnt per
    question bytes and would carry one client's block to another."""

    def admits(self, req: Request) -> bool: ...


@runtime_checkable
class Observer(Protocol):
    """Told of every answer of its block, on every path, through a view of the query and the bytes sent (log)."""

    def observe(self, req: QueryView, reply: WireReply, size: int, duration: float) -> None: ...


@runtime_checkable
class ErrorReporter(Protocol):
    """Logs or counts a query's error (errors): the relay path reports its upstreams' errors to it, and
    with one in the block the server leaves the logging of chain errors to it."""

    def report(self, req: QueryView, error: BaseException | None) -> None: ...


@runtime_checkable
class MetadataProvider(Protocol):
    """Notes metadata about a query (`req.set_meta`) when the block's metadata plugin asks, before the chain
    runs (kubernetes: the parts of a cluster name). Called for every query in metadata's zones: be quick."""

    @property
    def name(self) -> str: ...

    def metadata(self, req: Request) -> None: ...


@runtime_checkable
class ReadinessCheck(Protocol):
    """Says whether it is ready to serve (kubernetes: synced), for the ready plugin."""

    def is_ready(self) -> bool: ...


# A readiness check as the ready plugin keeps it: the plugin's name and its check.
Readiness = tuple[str, Callable[[], bool]]


@runtime_checkable
class ReadinessMonitor(Protocol):
    """Watches the readiness checks of every block that loads it (ready), given once the config is built."""

    def monitor(self, checks: list[Readiness]) -> None: ...


@runtime_checkable
class BlockCheck(Protocol):
    """Checks, once its block is built and before anything starts, that the block holds what the plugin
    needs (k8s_external: the kubernetes plugin; autopath: the plugin named by `@NAME`); raises a
    CorefileError naming the directive's line if not."""

    def check_block(self, block: BlockView) -> None: ...


@dataclass(frozen=True)
class StreamTimeouts:
    """How long a TCP or DNS-over-TLS connection may take (seconds; None: the listener's default, CoreDNS's
    read 3s, write 5s, idle 10s) and how many queries it may ask before the server closes it (-1: no limit)."""

    read: float | None = None
    write: float | None = None
    idle: float | None = None
    max_queries: int | None = None


@dataclass
class ListenOptions:
    """How a block's listeners are opened: the addresses they bind ("" for all), the TLS contexts of
    its tls:// and https:// listeners, and the timeouts of their connections (timeouts)."""

    bind: list[str] = field(default_factory=list)
    tls: ssl.SSLContext | None = None
    https_tls: ssl.SSLContext | None = None  # the same certificate, offering HTTP/2 and HTTP/1.1 in ALPN
    timeouts: StreamTimeouts | None = None


@runtime_checkable
class ListenerOptions(Protocol):
    """Sets options of its block's listeners (bind: addresses; tls: the certificate for DNS over TLS
    and HTTPS; timeouts: its connections' timeouts)."""

    def listener_options(self, opts: ListenOptions) -> None: ...


class ServerInstance(Protocol):
    """What plugins may ask of the running server (dnsserver.instance.Instance): no more than this."""

    @property
    def path(self) -> str | None: ...

    @property
    def serving(self) -> asyncio.Event: ...

    def address_for(self, zone: str, transport: str = "dns") -> tuple[str, int] | None:
        """Where to send a query for `zone` to this very server (loopback for a wildcard listener)."""
        ...

    def listening_on(self, zone: str, transport: str = "dns") -> tuple[str, int] | None:
        """The address (host "" for every address) and port of the listener that serves `zone`."""
        ...

    def needs_reload(self) -> bool: ...

    def reload_soon(self) -> None: ...


class BlockView(Protocol):
    """What plugins may read of their server block once it is built: its plugins, its whole chain (for a
    lookup that starts again at the top, as CoreDNS's upstream does: dns64), and whether an error
    reporter (errors) logs the chain's errors."""

    @property
    def plugins(self) -> Sequence[Plugin]: ...

    @property
    def chain(self) -> Next: ...

    @property
    def logs_errors(self) -> bool: ...


@dataclass
class SetupContext:
    """What a plugin's setup() may use: its block's zones and the process-wide services."""

    keys: list[ZoneAddr]
    corefile: str
    http: HttpPlan
    # The running server (None when a config is only built: tests, checks), and the block once it is built;
    # both read lazily (reload, loop, kubernetes; transfer, rewrite).
    instance: ServerInstance | None = None
    block: BlockView | None = None

    @property
    def zones(self) -> list[str]:
        """The block's zones, each once, in key order."""
        return list(dict.fromkeys(k.zone for k in self.keys))

    def path(self, p: str) -> str:
        """A path relative to the Corefile's directory, as CoreDNS resolves plugin file arguments."""
        return p if os.path.isabs(p) else os.path.join(os.path.dirname(os.path.abspath(self.corefile)), p)


def plugin_zones(args: list[str], ctx: SetupContext) -> list[str]:
    """A plugin's ZONES arguments normalised (CIDRs expanded), or the block's zones if none are given."""
    if not args:
        return ctx.zones
    out: list[str] = []
    for a in args:
        try:
            zs = reverse_zones(a) if "/" in a else [normalize_zone(a)]
        except ValueError:
            zs = [normalize_zone(a)]
        for z in zs:
            if z not in out:
                out.append(z)
    return out


def parse_properties(d: Dispenser, ctx: SetupContext, cfg: C, table: Mapping[str, Property[C]]) -> None:
    """Read the properties of the directive's block into `cfg`, each by its entry in `table`; a property
    that has none is an error."""
    while d.next_block():
        prop = d.val()
        handler = table.get(prop)
        if handler is None:
            raise d.unknown_property()  # named before its arguments are read: the message names the property
        handler(d, ctx, cfg, prop, d.remaining_args())


def match_zone(zones: list[str], name: str) -> str | None:
    """The longest of `zones` that `name` (lower-case FQDN) is in or under, or None."""
    best: str | None = None
    for z in zones:
        if (z == "." or name == z or name.endswith("." + z)) and (best is None or len(z) > len(best)):
            best = z
    return best


class Fallthrough:
    """`fallthrough [ZONES...]`: which names a plugin passes on instead of answering a name error."""

    __slots__ = ("enabled", "zones")

    def __init__(self) -> None:
        self.enabled = False
        self.zones: list[str] = []

    def set(self, args: list[str], ctx: SetupContext) -> None:
        self.enabled = True
        self.zones = plugin_zones(args, ctx) if args else ["."]

    def covers(self, name: str) -> bool:
        return self.enabled and match_zone(self.zones, name) is not None
