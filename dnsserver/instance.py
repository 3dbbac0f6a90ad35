"""The running server: load a Corefile, start it, reload it without losing queries, shut it down."""

from __future__ import annotations

import asyncio

from prometheus_client import Counter, Gauge

from corefile import Corefile, CorefileError, load, parse
from dnsserver.config import Block, Config, ListenKey, build
from dnsserver.dispatch import Dispatcher
from dnsserver.doh import DohListener
from dnsserver.httpendpoints import HttpEndpoints
from dnsserver.listeners import Listener
from dnsserver.logs import core_log, plugin_log
from dnsserver.metrics import REGISTRY, process_metrics
from dnsserver.plugin import Plugin, StreamTimeouts

log = core_log

RELOAD_FAILED = Counter("coredns_reload_failed", "Counter of the number of failed reload attempts.",
                        registry=REGISTRY)
RELOAD_VERSION = Gauge("coredns_reload_version_info", "A metric with a constant '1' value labeled by hash, "
                       "and value which type of hash generated.", ["hash", "value"], registry=REGISTRY)

DEFAULT_COREFILE = ".:{port} {{\n    whoami\n    log\n}}\n"


def _timeouts(zones: dict[str, list[Block]]) -> StreamTimeouts | None:
    """The connection timeouts of a listener: those of the first of its blocks that sets any (timeouts)."""
    return next((b.timeouts for bs in zones.values() for b in bs if b.timeouts is not None), None)


class Instance:
    """The running server: its configuration, listeners and HTTP endpoints, across reloads."""

    def __init__(self, corefile_path: str | None, dns_port: int = 53) -> None:
        self.path = corefile_path
        self.dns_port = dns_port
        self.metrics = process_metrics()
        self.http = HttpEndpoints()
        self.listeners: dict[ListenKey, Listener] = {}
        self.config: Config | None = None
        self.reloading: asyncio.Task[bool] | None = None
        self.serving = asyncio.Event()  # set once the first configuration's listeners are open
        self.failed_digest = ""  # the files as they were when a reload last failed: not retried until they change
        self._swap_lock = asyncio.Lock()

    def read(self) -> Corefile:
        if self.path is None:
            return parse(DEFAULT_COREFILE.format(port=self.dns_port), "Corefile")
        return load(self.path)

    def build(self, corefile: Corefile) -> Config:
        return build(corefile, self.dns_port, self)

    async def start(self, config: Config | None = None) -> None:
        """Start `config` (built from the Corefile if not given). Raises on bind errors."""
        cfg = config or self.build(self.read())
        await self._activate(cfg)

    async def _activate(self, new: Config) -> None:
        async with self._swap_lock:
            old = self.config
            started = []
            try:
                for p in new.plugins:
                    await p.start()
                    started.append(p)
                await self.http.apply(new.http)
                await self._swap_listeners(new)
            except BaseException:
                for p in reversed(started):
                    await _quiet_stop(p)
                if old is not None:
                    await self.http.apply(old.http)
                raise
            self.config = new
            self._record_version(new)
            self.serving.set()
            if old is not None:
                for p in reversed(old.plugins):
                    await _quiet_stop(p)

    async def _swap_listeners(self, new: Config) -> None:
        opened: list[ListenKey] = []
        try:
            for key, zones in new.listeners.items():
                transport, host, port = key
                label = f"{transport}://{host}:{port}"
                listener = self.listeners.get(key)
                if listener is None:
                    tls = next((t for bs in zones.values() for b in bs if (t := b.tls_for(transport)) is not None),
                               None)  # fmt: skip
                    kind = DohListener if transport == "https" else Listener
                    listener = kind(host, port, Dispatcher(label, zones, self.metrics, host), tls=tls)
                    listener.set_timeouts(_timeouts(zones))
                    await listener.open()
                    self.listeners[key] = listener
                    opened.append(key)
        except BaseException:
            for key in opened:
                await self.listeners.pop(key).close(grace=0)
            raise
        # Only now that every socket is open do running listeners switch: an atomic swap per listener.
        for key, zones in new.listeners.items():
            listener = self.listeners[key]
            if key not in opened:
                listener.dispatcher = Dispatcher(listener.dispatcher.label, zones, self.metrics, listener.host,
                                                 tasks=listener.tasks)
                listener.set_timeouts(_timeouts(zones))  # the new configuration's, or the defaults again
        for key in [k for k in self.listeners if k not in new.listeners]:
            await self.listeners.pop(key).close()

    def _record_version(self, cfg: Config) -> None:
        digest = cfg.corefile.digest()
        RELOAD_VERSION.clear()
        RELOAD_VERSION.labels(digest, "sha512").set(1)
        if any(p.announces_config for p in cfg.plugins):
            plugin_log("reload").info("Running configuration SHA512 = %s", digest)
        # Rebuilt, not added to: a plugin removed by a reload must stop reporting itself enabled.
        self.metrics.plugins_enabled = {(f"{k.transport}://:{k.port}", k.zone, n)
                                        for b in cfg.blocks for k in b.keys for n in b.names}

    def reload_soon(self) -> None:
        """Start a reload in its own task: the caller (the reload plugin) is stopped by the reload itself."""
        if self.reloading is None or self.reloading.done():
            self.reloading = asyncio.get_running_loop().create_task(self.reload())

    def disk_digest(self) -> str:
        """A digest of the Corefile and its imports as they are on disk now (or of the error reading them)."""
        try:
            return self.read().digest()
        except (CorefileError, OSError) as e:
            return f"unreadable:{e}"

    def needs_reload(self) -> bool:
        """The files differ from the running configuration and from the last version that failed."""
        digest = self.disk_digest()
        running = self.config.corefile.digest() if self.config is not None else ""
        return digest != running and digest != self.failed_digest

    async def reload(self) -> bool:
        """Re-read the Corefile and switch to it; on any error keep serving the old configuration."""
        try:
            corefile = self.read()
            cfg = self.build(corefile)
            await self._activate(cfg)
        except (CorefileError, OSError) as e:
            RELOAD_FAILED.inc()
            self.failed_digest = self.disk_digest()
            log.error("Restart failed: %s", e)
            return False
        self.failed_digest = ""
        log.info("Reloading complete")
        return True

    def listening_on(self, zone: str, transport: str = "dns") -> tuple[str, int] | None:
        """The address (host "" for every address) and port of the listener that serves `zone`."""
        for (tr, host, _), listener in self.listeners.items():
            if tr == transport and zone in listener.dispatcher.zones:
                return host, listener.port
        return None

    def address_for(self, zone: str, transport: str = "dns") -> tuple[str, int] | None:
        """Where this process answers `zone` (a loopback address for wildcard listeners), for self-queries."""
        found = self.listening_on(zone, transport)
        if found is None:
            return None
        host, port = found
        return ("127.0.0.1" if host in ("", "0.0.0.0", "::") else host), port

    def banner(self) -> list[str]:
        lines = []
        for (transport, host, port), zones in self.listeners_zones():
            for z in zones:
                prefix = "" if transport == "dns" else f"{transport}://"
                lines.append(f"{prefix}{z}:{port}" + (f" on {host}" if host else ""))
        return lines

    def listeners_zones(self) -> list[tuple[ListenKey, list[str]]]:
        assert self.config is not None
        out = []
        for key, zones in self.config.listeners.items():
            listener = self.listeners[key]
            out.append(((key[0], key[1], listener.port), list(zones)))
        return out

    async def shutdown(self) -> None:
        """Graceful stop: lameduck hooks first (DNS keeps answering), then listeners, then plugins."""
        cfg = self.config
        if cfg is not None:
            for p in cfg.plugins:
                try:
                    await p.on_shutdown()
                except Exception:
                    plugin_log(p.name).exception("shutdown hook failed")
        for listener in list(self.listeners.values()):
            await listener.close()
        self.listeners.clear()
        if cfg is not None:
            for p in reversed(cfg.plugins):
                await _quiet_stop(p)
        await self.http.close()
        self.config = None


async def _quiet_stop(p: Plugin) -> None:
    try:
        await p.stop()
    except Exception:
        plugin_log(p.name).exception("stop failed")
