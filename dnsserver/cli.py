"""`portolan dns`: CoreDNS's command line, so an existing Deployment's args work unchanged."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import platform
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from corefile import CorefileError
from dnsplugins import PLUGINS
from portolan import __version__

if TYPE_CHECKING:  # imported when serving only: -version and -plugins need not load the server
    from collections.abc import Callable, Coroutine

    from dnsserver.config import Config
    from dnsserver.instance import Instance


def _parser() -> argparse.ArgumentParser:
    # Go's flag package accepts -flag and --flag alike; so do we.
    p = argparse.ArgumentParser(prog="portolan dns", description="Corefile-driven DNS server")
    p.add_argument("-conf", "--conf", dest="conf", default=None,
                   help="Corefile to load (default: ./Corefile, or a whoami server if it does not exist)")
    p.add_argument("-dns.port", "--dns.port", dest="port", type=int, default=53,
                   help="default port for server blocks that do not name one (default 53)")
    p.add_argument("-plugins", "--plugins", action="store_true", help="list the installed plugins and exit")
    p.add_argument("-version", "--version", action="store_true", help="print the version and exit")
    p.add_argument("-quiet", "--quiet", action="store_true", help="do not print the startup banner")
    p.add_argument("-pidfile", "--pidfile", default=None, help="write the process ID to this file")
    return p


def _setup_logging() -> None:
    # CoreDNS writes "[LEVEL] message" to standard output; plugins put the level in their messages.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"portolan-{__version__}\n{sys.platform}/{platform.machine()}, python{platform.python_version()}")
        return 0
    if args.plugins:
        print("Server types:\n  dns\n\nCaddyfile loaders:\n  flag\n  default\n\nOther plugins:")
        for spec in sorted(PLUGINS, key=lambda s: s.name):
            print(f"  dns.{spec.name}")
        return 0
    _setup_logging()
    path = args.conf
    if path is None and os.path.exists("Corefile"):
        path = "Corefile"
    if path is not None and not os.path.exists(path):
        print(f"Corefile {path!r} does not exist", file=sys.stderr)
        return 1

    from dnsserver.instance import Instance

    instance = Instance(path, dns_port=args.port)
    try:
        config = instance.build(instance.read())  # every config error surfaces here, before any socket
    except CorefileError as e:
        print(str(e), file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1

    runner: Callable[[Coroutine[object, object, int]], int] = asyncio.run
    try:
        import uvloop
    except ImportError:  # uvloop is optional: stock asyncio works, only slower on UDP
        pass
    else:
        runner = uvloop.run
    try:
        return runner(_serve(instance, config, args))
    except KeyboardInterrupt:
        return 0


async def _serve(instance: Instance, config: Config, args: argparse.Namespace) -> int:
    # Handlers go in before anything is announced: a SIGTERM right after the banner must be graceful.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, instance.reload_soon)  # CoreDNS reloads on SIGUSR1
    try:
        await instance.start(config)
    except OSError as e:
        print(f"listen: {e}", file=sys.stderr)
        await instance.shutdown()
        return 1
    # Everything allocated so far (modules, config, zone data) lives as long as the process: keep it out
    # of the cyclic collector's full passes, which otherwise stall the hot path for milliseconds.
    gc.freeze()
    if not args.quiet:
        for line in instance.banner():
            print(line)
        print(f"portolan-{__version__}")
        print(f"{sys.platform}/{platform.machine()}, python{platform.python_version()}", flush=True)
    if args.pidfile:
        await asyncio.to_thread(Path(args.pidfile).write_text, f"{os.getpid()}\n")
    await stop.wait()
    from dnsserver.logs import core_log

    core_log.info("SIGTERM: Shutting down servers then terminating")
    await instance.shutdown()
    if args.pidfile:
        with contextlib.suppress(OSError):
            os.remove(args.pidfile)
    return 0
