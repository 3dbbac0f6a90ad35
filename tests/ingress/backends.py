"""Small aiohttp servers standing in for pods: each answers with its own name, the request
line it received and its headers (as JSON), and echoes WebSocket messages prefixed with its
name, so tests can tell which backend answered and what nginx passed on. ``/sleep/SECONDS``
answers after that long; ``/answer?status=N&Header=value`` answers with that status and
headers; a backend started with a ``delay`` is that much slower on every request.

All backends of one Service listen on the same port at different loopback addresses
(127.0.0.x), as pods behind one EndpointSlice port do.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

NAME = web.AppKey("name", str)
DELAY = web.AppKey("delay", float)


async def _handle(request: web.Request) -> web.StreamResponse:
    name = request.app[NAME]
    if request.headers.get("Upgrade", "").lower() == "websocket":
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(f"{name}:{msg.data}")
        return ws
    body = await request.read()
    if request.app[DELAY]:
        await asyncio.sleep(request.app[DELAY])
    if request.path == "/answer":  # /answer?status=302&Location=...: a pod's redirect or cookie, as asked
        query = request.query
        extra = {k: v for k, v in query.items() if k != "status"}
        return web.Response(status=int(query.get("status", "200")), headers=extra, text=name)
    if request.path.startswith("/sleep/"):  # /sleep/SECONDS: a slow pod, for timeouts and limits
        await asyncio.sleep(float(request.path.split("/")[2]))
    return web.json_response(
        {
            "backend": name,
            "method": request.method,
            "path": request.raw_path,
            "version": f"{request.version.major}.{request.version.minor}",
            "headers": {k: v for k, v in request.headers.items()},
            "body_length": len(body),
            "peer": list(request.transport.get_extra_info("peername") or ()) if request.transport else [],
        },
        headers={"X-Backend": name},
    )


@dataclass
class Backend:
    """One running stand-in pod: its name, where it listens and the runner that stops it."""

    name: str
    address: str
    port: int
    runner: web.AppRunner


@dataclass
class Backends:
    """The stand-in pods a test starts, on loopback addresses of their own, and stops (one, or all at the end)."""

    started: list[Backend] = field(default_factory=list)
    _next_host: int = 2

    def next_addresses(self, count: int) -> list[str]:
        addrs = [f"127.0.0.{self._next_host + i}" for i in range(count)]
        self._next_host += count
        return addrs

    async def start(
        self, *names: str, tls: ssl.SSLContext | None = None, delay: float = 0.0, address: str | None = None
    ) -> tuple[list[str], int]:
        """Start one backend per name on consecutive 127.0.0.x addresses (or the one ``address``
        given, such as ::1, for a single name), all on one port (serving HTTPS with ``tls``, each
        answer ``delay`` seconds late). Returns (addresses, port)."""
        for _ in range(20):
            addresses = [address] if address is not None else self.next_addresses(len(names))
            port = _free_port(addresses[0])
            try:
                started = [await self._start_one(n, a, port, tls, delay) for n, a in zip(names, addresses, strict=True)]
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            self.started.extend(started)
            return addresses, port
        raise RuntimeError("no common free port for the backends")

    async def _start_one(
        self, name: str, address: str, port: int, tls: ssl.SSLContext | None = None, delay: float = 0.0
    ) -> Backend:
        app = web.Application(client_max_size=64 * 1024 * 1024)  # nginx enforces the body limits under test
        app[NAME] = name
        app[DELAY] = delay
        app.router.add_route("*", "/{tail:.*}", _handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, address, port, ssl_context=tls)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        return Backend(name, address, port, runner)

    async def stop(self, name: str | None = None) -> None:
        keep = []
        for b in self.started:
            if name is None or b.name == name:
                await b.runner.cleanup()
            else:
                keep.append(b)
        self.started = keep


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
        s.bind((address, 0))
        return s.getsockname()[1]
