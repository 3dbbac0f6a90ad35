"""The nginx process the controller owns: ``nginx -t``, start, reload, restart, stop.

nginx runs in the foreground as our child (``-g 'daemon off; master_process on;'``), with
``-p`` and every path under the config dir, so the controller supervises it directly: it
sees the master exit and starts it again, and a reload is a SIGHUP to a PID it knows rather
than ``nginx -s reload`` trusting a pid file. On Linux the master also gets SIGTERM if the
controller dies without stopping it (PR_SET_PDEATHSIG), so no nginx outlives its controller.

A reload is confirmed, not assumed: the configuration carries its hash and nginx serves it on
the status socket, and the controller polls that over fresh connections until the new
workers answer with the new hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from ingress.layout import Layout
from kubewatch import Backoff

log = logging.getLogger(__name__)

FOREGROUND = "daemon off; master_process on;"
_PR_SET_PDEATHSIG = 1
# Named when the Lua module is missing: what to install on Debian for the live data plane.
LUA_PACKAGES = "libnginx-mod-http-lua, lua-resty-core and lua-resty-lrucache"


class NginxError(Exception):
    """nginx could not be run, started or reloaded."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict of ``nginx -t`` on a configuration, with nginx's messages."""

    ok: bool
    output: str  # nginx's messages (the [emerg] line names file:line on failure)


def _pdeathsig() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_pdeathsig() -> None:  # runs in the child between fork and exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return set_pdeathsig


async def check_binary(binary: str) -> str:
    """nginx -v, to fail at start-up with a clear message rather than at the first test."""
    try:
        proc = await asyncio.create_subprocess_exec(
            binary, "-v", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        async with asyncio.timeout(30):
            out, _ = await proc.communicate()
    except (OSError, TimeoutError) as exc:
        raise NginxError(f"cannot run {binary}: {exc}") from exc
    if proc.returncode != 0:
        raise NginxError(f"{binary} -v failed: {out.decode(errors='replace').strip()}")
    return out.decode(errors="replace").strip()


async def check_config(binary: str, layout: Layout, path: Path, timeout: float = 60.0) -> CheckResult:
    """``nginx -t`` on ``path`` (a candidate next to the live nginx.conf)."""
    proc = await asyncio.create_subprocess_exec(
        binary, "-t", "-q", "-p", f"{layout.root}/", "-c", str(path), "-e", str(layout.error_log),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=layout.root,  # as the master runs: relative paths (the status socket) resolve there
    )  # fmt: skip
    try:
        async with asyncio.timeout(timeout):  # not wait_for: see Controller._status_loop
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return CheckResult(False, f"nginx -t did not finish within {timeout}s")
    return CheckResult(proc.returncode == 0, out.decode(errors="replace").strip())


async def check_lua(binary: str, layout: Layout, modules: tuple[str, ...]) -> None:
    """NginxError naming the Debian packages when nginx cannot run the live data plane: the
    modules are missing, or lua-resty-core (which the Lua module requires) is."""
    probe = _lua_probe(layout, modules, LUA_PACKAGES)
    try:
        result = await check_config(binary, layout, probe)
    finally:
        os.unlink(probe)
    if not result.ok:
        raise NginxError(f"nginx cannot run the Lua data plane (install Debian's {LUA_PACKAGES}): {result.output}")


def _lua_probe(layout: Layout, modules: tuple[str, ...], packages: str) -> Path:
    """A configuration in the config dir that loads ``modules`` and requires what the data plane
    does; NginxError if a module is not there. Plain file work, as Layout.prepare's: it runs
    once at start-up, before the controller serves anything that could wait on it."""
    missing = [m for m in modules if not Path(m).is_file()]
    if missing:
        raise NginxError(f"nginx's Lua module is missing ({', '.join(missing)}): install Debian's {packages}")
    lines = [f'load_module "{m}";' for m in modules]
    lines += ["events {}", "http {", '    init_by_lua_block { require("resty.core") require("ngx.balancer") }', "}"]
    fd, name = tempfile.mkstemp(dir=layout.root, prefix=".lua-check.", suffix=".conf")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return Path(name)


async def running_hash(layout: Layout, timeout: float = 2.0) -> str | None:
    """The hash of the configuration nginx's workers run now, or None if unreachable."""
    text = await status_get(layout, "/portolan/config-hash", timeout)
    return None if text is None else text.strip()


async def status_get(layout: Layout, path: str, timeout: float = 2.0) -> str | None:
    """A page of nginx's status socket, or None if unreachable or not 200.

    A fresh connection each time: a kept-alive one could still be served by an old worker.
    """
    connector = aiohttp.UnixConnector(path=layout.status_socket_address(), force_close=True)
    try:
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get("http://nginx-status" + path, timeout=aiohttp.ClientTimeout(total=timeout)) as resp,
        ):
            if resp.status != 200:
                return None
            return await resp.text()
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of a master's process group (orphaned workers), right after the
    master itself was reaped."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class Nginx:
    """The nginx master the controller runs as its child: started, reloaded, restarted when it dies, stopped."""

    def __init__(self, binary: str, layout: Layout, *, on_restart: Callable[[], None] | None = None) -> None:
        self.binary = binary
        self.layout = layout
        self._backoff = Backoff(initial=0.2, cap=10.0)
        self._on_restart = on_restart
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self.started = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    async def _spawn(self) -> asyncio.subprocess.Process:
        # A master killed with SIGKILL leaves its Unix socket behind, and bind() then fails.
        self.layout.status_socket.unlink(missing_ok=True)
        args = [self.binary, "-p", f"{self.layout.root}/", "-c", str(self.layout.conf),
                "-e", str(self.layout.error_log), "-g", FOREGROUND]  # fmt: skip
        self._proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=None,  # start-up errors reach the controller's own stderr
            preexec_fn=_pdeathsig(),
            cwd=self.layout.root,  # nginx.conf names the status socket relative to it
            # Its own process group (pgid = master pid), so the workers of a master that died
            # can be found and stopped: they would otherwise keep the ports open and serve
            # the old configuration forever.
            start_new_session=True,
        )
        log.info("nginx master started (pid %d)", self._proc.pid)
        return self._proc

    async def start(self) -> None:
        """Start the master on the current nginx.conf and supervise it."""
        self._stopping = False
        await self._spawn()
        self.started.set()
        self._supervisor = asyncio.create_task(self._supervise(), name="nginx supervisor")

    async def _supervise(self) -> None:
        while not self._stopping:
            proc = self._proc
            assert proc is not None
            began = time.monotonic()
            code = await proc.wait()
            if self._stopping:
                return
            _kill_group(proc.pid)
            if time.monotonic() - began > 30:
                self._backoff.reset()  # it ran fine for a while: this is a new failure
            delay = self._backoff.next()
            log.error(
                "nginx master (pid %d) exited with %s; restarting in %.1fs; error log tail:\n%s",
                proc.pid, code, delay, self.error_log_tail(),
            )  # fmt: skip
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                spawned = await self._spawn()
            except OSError as exc:
                log.error("cannot restart nginx: %s", exc)
                continue
            # The callback sends the live data again: not before the new master answers, or the
            # push fails and waits for the controller's retry, with nginx serving 503s meanwhile.
            await self._answering(spawned, timeout=10.0)
            if self._on_restart is not None:
                self._on_restart()

    async def _answering(self, proc: asyncio.subprocess.Process, timeout: float) -> None:
        """Until ``proc``'s status socket answers, it exits, or ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while proc.returncode is None and time.monotonic() < deadline:
            if await running_hash(self.layout, timeout=1.0) is not None:
                return
            await asyncio.sleep(0.02)

    def reload(self) -> None:
        """SIGHUP: the master re-reads nginx.conf, starts new workers and lets the old ones
        finish their requests (up to worker_shutdown_timeout)."""
        pid = self.pid
        if pid is None:
            raise NginxError("nginx is not running")
        os.kill(pid, signal.SIGHUP)

    async def wait_for_hash(self, digest: str, timeout: float = 10.0) -> bool:
        """True once nginx answers with this configuration hash."""
        deadline = time.monotonic() + timeout
        while True:
            if await running_hash(self.layout) == digest:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)

    async def stop(self, graceful: float = 0.0) -> None:
        """Stop nginx: SIGQUIT and up to ``graceful`` seconds for in-flight requests, then
        SIGTERM (fast shutdown), then SIGKILL."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        steps = [(signal.SIGQUIT, graceful)] if graceful > 0 else []
        steps += [(signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)]
        for sig, wait in steps:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                async with asyncio.timeout(wait):
                    await proc.wait()
                break
            except TimeoutError:
                continue
        _kill_group(proc.pid)
        log.info("nginx master (pid %d) stopped", proc.pid)

    def error_log_tail(self, limit: int = 2000) -> str:
        try:
            with open(self.layout.error_log, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - limit))
                return f.read().decode(errors="replace")
        except OSError:
            return "(no error log)"
