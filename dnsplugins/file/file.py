"""file at run time: the zones served, answered from memory and read again when their files change."""


import asyncio
import os
from functools import partial

from dnslib import RR, DNSRecord
from prometheus_client import Gauge

from corefile import CorefileError
from dnsplugins.file.config import FileConfig, Source
from dnsplugins.file.lexer import ZoneFileError
from dnsplugins.file.zone import DELEGATION, NXDOMAIN, Zone
from dnsplugins.file.zonefile import Unchanged, parse_file
from dnsserver import wire
from dnsserver.durations import format_duration
from dnsserver.logs import plugin_log
from dnsserver.metrics import REGISTRY
from dnsserver.periodic import Periodic
from dnsserver.plugin import Next, Plugin, match_zone
from dnsserver.request import Request
from dnsserver.wire.consts import REFUSED, SERVFAIL, TYPE_AXFR, TYPE_IXFR

log = plugin_log("file")

ENTRIES = Gauge("coredns_file_entries", "The number of records in each zone loaded from a file.", ["dns_name"],
                registry=REGISTRY)


class File(Plugin):
    """`file`: serves zones read from RFC 1035 zone files, reloaded when they change."""

    name = "file"

    def __init__(self, config: FileConfig) -> None:
        self.config = config
        self.sources = {s.origin: s for s in config.sources}  # a zone named twice: the last one wins
        self.origins = list(self.sources)
        self._jobs: list[Periodic] = []

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        origin = match_zone(self.origins, req.name)
        if origin is None:
            return await next(req)
        if req.qtype == TYPE_AXFR or req.qtype == TYPE_IXFR:
            return req.reply(REFUSED)  # only reached when no `transfer` took it: no transfer allowed
        src = self.sources[origin]
        zone = src.zone
        if zone is None:
            return req.reply(SERVFAIL)
        found = zone.lookup(req.name, req.qtype, req.do)
        if found.kind == NXDOMAIN and src.fall.covers(req.name):
            return await next(req)
        reply = req.reply(wire.NXDOMAIN if found.kind == NXDOMAIN else 0, aa=found.kind != DELEGATION)
        reply.rr, reply.auth, reply.ar = found.answer, found.ns, found.extra
        return reply

    def transfer(self, zone: str) -> list[RR] | None:
        """The Transferer protocol (see dnsplugins.transfer): every record of `zone`, SOA first and last.

        None unless `zone` is exactly one of ours and loaded. The list is shared: do not change it.
        """
        src = self.sources.get(zone)
        if src is None or src.zone is None:
            return None
        return src.zone.axfr

    # -- loading -------------------------------------------------------------------------------

    def load(self, src: Source) -> bool:
        """Read `src` now; True if a new zone replaced the one served.

        With a zone already loaded, the file is used only if its serial changed (or, with
        reload_by_mtime, if its mtime did). Errors are logged and the served zone is kept.
        """
        try:
            mtime = os.stat(src.path).st_mtime_ns
            if src.by_mtime and src.zone is not None and mtime == src.mtime:
                return False
            src.mtime = mtime  # a broken file is retried when it changes again, not at every tick
            serial = None if src.by_mtime or src.zone is None else src.zone.serial
            zone = Zone(parse_file(src.path, src.file, src.origin, serial))
        except Unchanged:
            return False
        except OSError as e:
            log.error('Failed to open zone "%s" in "%s": %s', src.origin, src.file,
                      e.strerror or e)
            return False
        except ZoneFileError as e:
            log.error('Failed to reload zone "%s": %s', src.origin, e)
            return False
        first = src.zone is None
        src.zone = zone
        ENTRIES.labels(src.origin).set(zone.size)
        if not first:
            log.info('Successfully reloaded zone "%s" in "%s" with serial %d', src.origin,
                     src.file, zone.serial)
        return True

    async def _reload(self, src: Source) -> None:
        # Off the event loop: a large zone takes long enough to parse to delay queries.
        await asyncio.to_thread(self.load, src)

    async def start(self) -> None:
        for src in self.sources.values():
            if src.zone is not None:
                ENTRIES.labels(src.origin).set(src.zone.size)
            if src.reload > 0:
                job = Periodic(src.reload_interval, partial(self._reload, src), "plugin/file")
                job.start()
                self._jobs.append(job)

    async def stop(self) -> None:
        for job in self._jobs:
            await job.stop()
        self._jobs = []


def first_load(src: Source) -> None:
    """Read a zone at setup: a broken file stops the configuration, a missing one may be waited for."""
    try:
        src.mtime = os.stat(src.path).st_mtime_ns
        src.zone = Zone(parse_file(src.path, src.file, src.origin))
    except ZoneFileError as e:
        raise CorefileError(e.file, e.line, f"plugin/file: {e.message}") from None
    except OSError as e:
        if src.reload == 0:
            raise CorefileError(*src.directive, f"plugin/file: open {src.file}: {e.strerror or e}") from None
        log.warning('Failed to open "%s": %s: trying again in %s', src.file,
                    e.strerror or e, format_duration(src.reload))
