"""The emulator process: an aiohttp app on a loopback port, announced on stdout.

    python -m tests.apiemu [--port N] [--state-file F] [--token T] [--tls-dir D] ...

Once listening it prints one line, ``APIEMU READY <url>``, which is what launchers wait for.
With --state-file (and without --no-save) every acknowledged write is appended to the state
file as it happens, and SIGTERM/SIGINT rewrites it compactly after closing the watches, so
a restart on the same file, even after SIGKILL, keeps every object and resourceVersion, like
a real API server restarting on the same etcd.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.apiemu import discovery
from tests.apiemu.api import Api, Settings
from tests.apiemu.control import Control
from tests.apiemu.errors import StatusError
from tests.apiemu.state import State
from tests.apiemu.tls import ensure_certs

log = logging.getLogger("apiemu")

# Paths that need no credentials: the test controls and the health endpoints.
_OPEN_PREFIXES = ("/_emu/", "/healthz", "/readyz", "/livez")


def build_app(state: State, settings: Settings, auth: dict[str, Any]) -> web.Application:
    api = Api(state, settings)

    @web.middleware
    async def errors_and_auth(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            tokens = auth.get("tokens")
            if tokens is not None and not request.path.startswith(_OPEN_PREFIXES):
                header = request.headers.get("Authorization", "")
                scheme, _, token = header.partition(" ")
                if scheme.lower() != "bearer" or token.strip() not in tokens:
                    raise StatusError(401, "Unauthorized")
            return await handler(request)
        except StatusError as err:
            return err.response()

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def openapi_missing(request: web.Request) -> web.Response:
        raise StatusError(404, "the emulator publishes no OpenAPI v2 schema")

    app = web.Application(middlewares=[errors_and_auth], client_max_size=256 * 1024 * 1024)
    discovery.add_routes(app)
    Control(state, settings, auth).add_routes(app)
    for path in ("/healthz", "/readyz", "/livez"):
        app.router.add_get(path, health)
    app.router.add_get("/openapi/v2", openapi_missing)
    app.router.add_route("*", "/api/{tail:.*}", api.handle)
    app.router.add_route("*", "/apis/{tail:.*}", api.handle)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.apiemu", description="Kubernetes API-server emulator for tests")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--state-file", type=Path, help="load objects from it at start, save them at exit")
    p.add_argument("--no-save", action="store_true", help="do not write the state file at exit")
    p.add_argument("--history-window", type=int, default=10_000, help="write events kept for watch resumes")
    p.add_argument("--bookmark-interval", type=float, default=60.0, help="seconds between bookmarks")
    p.add_argument("--default-watch-timeout", type=float, default=1800.0)
    p.add_argument(
        "--namespace-finalize-delay",
        type=float,
        default=0.5,
        help="seconds a deleted namespace stays Terminating",
    )
    p.add_argument("--token", action="append", help="require this bearer token (repeatable)")
    p.add_argument("--tls-dir", type=Path, help="serve HTTPS with a CA and certificate kept here")
    p.add_argument("--watch-gone-http", action="store_true", help="answer too-old watches with HTTP 410")
    p.add_argument("--exit-with-stdin", action="store_true", help="shut down when stdin closes (the launcher died)")
    p.add_argument("--bare", action="store_true", help="start empty, without the system namespaces")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    state = State(history_window=args.history_window, namespace_finalize_delay=args.namespace_finalize_delay)
    if args.state_file is not None and args.state_file.exists():
        state.load(args.state_file)
        for namespace in state.terminating_namespaces():
            state.schedule_finalize(namespace)
        # A large fixture is long-lived: keep it out of the collector's full passes, which
        # would otherwise stall every response while they walk it.
        gc.collect()
        gc.freeze()
    elif not args.bare:
        # What an API server creates when it first boots.
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            state.add_objects([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    settings = Settings(
        bookmark_interval=args.bookmark_interval,
        default_watch_timeout=args.default_watch_timeout,
        gone_as_http=args.watch_gone_http,
    )
    auth: dict[str, Any] = {"tokens": set(args.token) if args.token else None}
    persist = args.state_file is not None and not args.no_save
    if persist:
        state.open_journal(args.state_file)

    app = build_app(state, settings, auth)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A restart rebinds the same port while old connections may sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    ssl_ctx = None
    scheme = "http"
    if args.tls_dir is not None:
        _, crt, key = ensure_certs(args.tls_dir)
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_ctx.load_cert_chain(crt, key)
        scheme = "https"
    site = web.SockSite(runner, sock, ssl_context=ssl_ctx, shutdown_timeout=1.0)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.exit_with_stdin:
        # The launcher holds our stdin open; if it dies, so does the pipe, and so do we.
        threading.Thread(target=_wait_for_eof, args=(loop, stop), daemon=True).start()
    print(f"APIEMU READY {scheme}://127.0.0.1:{port}", flush=True)
    await stop.wait()
    for ws in state.watchers.values():
        for w in list(ws):
            w.close()
    if persist:
        state.save(args.state_file)
    state.close_journal()
    await runner.cleanup()


def _wait_for_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    # os.read on the descriptor, not sys.stdin: a daemon thread parked inside the buffered
    # reader holds its lock and stalls interpreter shutdown.
    while os.read(0, 4096):
        pass
    with contextlib.suppress(RuntimeError):  # the loop already finished
        loop.call_soon_threadsafe(stop.set)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
