"""file's setup: the `file` directives of a server block, one Source per zone they name."""


from dataclasses import dataclass, field

from corefile import Dispenser
from dnsplugins import duration_arg
from dnsplugins.file.zone import Zone
from dnsserver.plugin import Fallthrough, SetupContext, plugin_zones

DEFAULT_RELOAD = 60.0


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
    seconds = duration_arg(d, values[0])
    if seconds < 0:
        raise d.err(f"invalid reload duration '{values[0]}'")
    return seconds
