"""Process-wide HTTP endpoints (/health, /ready, /metrics) that survive reloads.

CoreDNS's health, ready and prometheus listeners belong to the process, not to a server block:
a reload must not drop the port Kubernetes probes. Each configuration builds a routing plan
(address -> path -> handler); applying it keeps servers whose address is unchanged and only
swaps their handlers, starts new addresses and stops vanished ones.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from corefile import Dispenser

log = logging.getLogger("portolan.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def split_address(address: str, default_port: int) -> tuple[str | None, int]:
    """':8080' -> (None, 8080) meaning every interface; 'localhost:9153'; '[::1]:8080'; '127.0.0.1'."""
    host, port = address, ""
    if address.startswith("["):
        end = address.find("]")
        host, port = address[1:end], address[end + 2:]
    elif address.count(":") == 1:
        host, port = address.split(":")
    elif address.count(":") > 1:  # bare IPv6 address
        host = address
    p = int(port) if port else default_port
    if not 0 <= p <= 65535:
        raise ValueError(f"invalid port {p}")
    return (host or None), p


def address_arg(d: Dispenser, default: str, default_port: int) -> str:
    """The optional single ADDRESS argument of health, ready and prometheus, checked at load time."""
    args = d.remaining_args()
    if len(args) > 1:
        raise d.arg_err()
    if not args:
        return default
    try:
        split_address(args[0], default_port)
    except ValueError as e:
        raise d.err(f"invalid address {args[0]!r}: {e}") from None
    return args[0]


class _Site:
    def __init__(self, host: str | None, port: int) -> None:
        self.host, self.port = host, port
        self.routes: dict[str, Handler] = {}
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port, reuse_address=True).start()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        handler = self.routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text="404 page not found\n")
        return await handler(request)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class HttpPlan:
    """The endpoints one configuration wants."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str | None, int], dict[str, Handler]] = {}

    def add(self, address: str, default_port: int, path: str, handler: Handler) -> None:
        key = split_address(address, default_port)
        # A second block asking for the same endpoint shares the first one's, as in CoreDNS.
        self.routes.setdefault(key, {}).setdefault(path, handler)


class HttpEndpoints:
    """The HTTP servers the plugins ask for (health, ready, metrics), kept open across reloads."""

    def __init__(self) -> None:
        self.sites: dict[tuple[str | None, int], _Site] = {}

    async def apply(self, plan: HttpPlan) -> None:
        for key, routes in plan.routes.items():
            site = self.sites.get(key)
            if site is None:
                site = _Site(*key)
                site.routes = dict(routes)
                await site.start()
                self.sites[key] = site
                log.debug("http endpoint %s:%d serving %s", key[0] or "", key[1], sorted(routes))
            else:
                site.routes = dict(routes)
        for key in [k for k in self.sites if k not in plan.routes]:
            await self.sites.pop(key).stop()

    async def close(self) -> None:
        for site in self.sites.values():
            await site.stop()
        self.sites.clear()
