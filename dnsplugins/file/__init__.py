"""file: serve zones from RFC 1035 master files, authoritatively.

## Syntax

```
file DBFILE [ZONES...] {
    reload DURATION
    reload_by_mtime
    fallthrough [ZONES...]
}
```

* **DBFILE** is the zone file; a relative path is taken from the Corefile's directory.
* **ZONES** are the zones read from it, each with its own origin (the same file may serve several);
  default the server block's zones. `file db.example.org` in a `.` block reads the file with origin
  `.`, which is rarely what is meant: name the zone.
* `reload` is how often the file is read again, default 1m; `0` turns it off. The new contents are
  used only when the SOA serial changed. A file that no longer parses is reported (file and line)
  and the zone already loaded stays in service.
* `reload_by_mtime`: read the file again only when its modification time changed, and then use it
  whatever its serial.
* `fallthrough` passes names that do not exist in the zone (NXDOMAIN) to the next plugin, for the
  ZONES given or all.

`file` may be used several times in a block, once per file. A DBFILE that cannot be opened at start
is an error when `reload` is 0; otherwise it is a warning, the zone answers SERVFAIL, and the file
is tried again at every reload.

Answers are authoritative (AA set):

* the SOA and NS records of the apex; an NS answer carries the addresses of in-zone name servers
  in the additional section, and MX and SRV answers those of their in-zone targets;
* positive answers carry the apex NS records in the authority section;
* a name that does not exist gets NXDOMAIN and one that exists without the type asked (including an
  empty non-terminal) NODATA, both with the SOA in the authority section, its TTL lowered to the
  SOA's MINIMUM if that is smaller (RFC 2308);
* a CNAME is followed inside the zone, up to 8 more links: the answer holds the chain and the
  target's records of the type asked. A loop, a target outside the zone or one that does not
  exist ends the chain and the answer holds what was found;
* a wildcard (`*.example.org.`) answers for names that do not exist below its parent, with the
  name asked as owner; names that exist, empty non-terminals included, are not covered (RFC 4592);
* a name at or below a delegation (NS records below the apex) gets a referral: NOERROR, AA clear,
  the NS records in the authority section and their glue in the additional section. A DS query for
  the delegated name itself is answered from this zone.

With the DO bit, the RRSIG records of a pre-signed zone accompany the records they cover (NSEC
denial of existence is not synthesised). AXFR and IXFR are refused here; outgoing transfers are the
*transfer* plugin's job, which takes the records from this one.

Zone files: `$ORIGIN`, `$TTL`, `$INCLUDE FILE [ORIGIN]` (FILE relative to the including file), `@`,
relative names, a blank owner meaning the previous one, parentheses across lines, `;` comments,
quoted strings, TTL and class in either order (class IN only), TTL units (`1h30m`). A record
without a TTL gets `$TTL`, else the last TTL written, else the SOA's MINIMUM. Types: SOA, NS, A,
AAAA, CNAME, PTR, MX, TXT, SPF, SRV, CAA, HINFO, DS, DNSKEY, RRSIG, NSEC, TLSA, SSHFP, NAPTR,
HTTPS, LOC, RP, and any type in the RFC 3597 form `TYPE65280 \\# 2 ABCD`. A mistake (unknown type,
bad data, no SOA, a record outside the zone, an unclosed parenthesis, a bad TTL) is reported as
`FILE:LINE - plugin/file: ...`.

Metrics: `coredns_file_entries{dns_name}`, the number of records of each zone loaded.

## Examples

```corefile
example.org {
    file db.example.org
}
```

```corefile
. {
    file db.example.org example.org {
        reload 30s
        fallthrough
    }
    file db.example.net example.net
    transfer example.org {
        to 10.240.1.1 192.0.2.0/24
    }
    forward . 9.9.9.9
}
```
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from functools import partial

from dnslib import RR, DNSRecord
from prometheus_client import Gauge

from corefile import CorefileError, Dispenser
from dnsplugins.file.lexer import ZoneFileError
from dnsplugins.file.zone import DELEGATION, NXDOMAIN, Zone
from dnsplugins.file.zonefile import Unchanged, parse_file
from dnsserver import wire
from dnsserver.durations import format_duration, parse_duration
from dnsserver.metrics import REGISTRY
from dnsserver.periodic import Periodic
from dnsserver.plugin import Fallthrough, Next, Plugin, SetupContext, match_zone, plugin_zones
from dnsserver.request import Request
from dnsserver.wire.consts import REFUSED, SERVFAIL, TYPE_AXFR, TYPE_IXFR

log = logging.getLogger("portolan")

DEFAULT_RELOAD = 60.0

ENTRIES = Gauge("coredns_file_entries", "The number of records in each zone loaded from a file.", ["dns_name"],
                registry=REGISTRY)


@dataclass
class Source:
    """One zone read from one file, and what is currently served for it."""

    origin: str
    path: str  # where it is read from
    file: str  # as the Corefile names it: what messages show
    reload: float = DEFAULT_RELOAD
    by_mtime: bool = False
    fall: Fallthrough = field(default_factory=Fallthrough)
    zone: Zone | None = None  # None until the file has been read successfully once
    mtime: int | None = None
    directive: tuple[str, int] = ("", 0)  # Corefile and line of the `file` directive naming it

    def reload_interval(self) -> float:
        """Seconds between checks of the file (read anew before each wait)."""
        return self.reload


@dataclass
class FileConfig:
    """The `file` directives of a block parsed: one Source per zone file."""

    sources: list[Source] = field(default_factory=list)


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
            log.error('[ERROR] plugin/file: Failed to open zone "%s" in "%s": %s', src.origin, src.file,
                      e.strerror or e)
            return False
        except ZoneFileError as e:
            log.error('[ERROR] plugin/file: Failed to reload zone "%s": %s', src.origin, e)
            return False
        first = src.zone is None
        src.zone = zone
        ENTRIES.labels(src.origin).set(zone.size)
        if not first:
            log.info('[INFO] plugin/file: Successfully reloaded zone "%s" in "%s" with serial %d', src.origin,
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


# -- setup ------------------------------------------------------------------------------------


def parse(d: Dispenser, ctx: SetupContext) -> FileConfig:
    cfg = FileConfig()
    while d.next():
        directive = (d.file(), d.line())
        args = d.remaining_args()
        if not args:
            raise d.arg_err()
        written, origins = args[0], plugin_zones(args[1:], ctx)
        reload, by_mtime, fall = DEFAULT_RELOAD, False, Fallthrough()
        while d.next_block():
            prop = d.val()
            if prop == "reload":
                reload = _reload_arg(d)
            elif prop == "reload_by_mtime":
                if d.remaining_args():
                    raise d.arg_err()
                by_mtime = True
            elif prop == "fallthrough":
                fall.set(d.remaining_args(), ctx)
            elif prop == "upstream":
                d.remaining_args()  # accepted and ignored, as CoreDNS still does
            else:
                raise d.unknown_property()
        for origin in origins:
            cfg.sources.append(Source(origin, ctx.path(written), written, reload, by_mtime, fall,
                                      directive=directive))
    return cfg


def _reload_arg(d: Dispenser) -> float:
    values = d.remaining_args()
    if len(values) != 1:
        raise d.err("reload duration value is expected")
    try:
        seconds = parse_duration(values[0])
    except ValueError as e:
        raise d.err(str(e)) from None
    if seconds < 0:
        raise d.err(f"invalid reload duration '{values[0]}'")
    return seconds


def _first_load(src: Source) -> None:
    """Read a zone at setup: a broken file stops the configuration, a missing one may be waited for."""
    try:
        src.mtime = os.stat(src.path).st_mtime_ns
        src.zone = Zone(parse_file(src.path, src.file, src.origin))
    except ZoneFileError as e:
        raise CorefileError(e.file, e.line, f"plugin/file: {e.message}") from None
    except OSError as e:
        if src.reload == 0:
            raise CorefileError(*src.directive, f"plugin/file: open {src.file}: {e.strerror or e}") from None
        log.warning('[WARNING] plugin/file: Failed to open "%s": %s: trying again in %s', src.file,
                    e.strerror or e, format_duration(src.reload))


def setup(d: Dispenser, ctx: SetupContext) -> File:
    cfg = parse(d, ctx)
    for src in cfg.sources:
        _first_load(src)
    return File(cfg)
