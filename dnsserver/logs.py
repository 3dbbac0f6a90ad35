"""The DNS server's log: a logger per plugin, and the one place CoreDNS's line prefixes are made.

CoreDNS writes `[LEVEL] plugin/NAME: message` for a plugin and `[LEVEL] message` for the server
itself. Here a plugin logs through its own logger, `plugin_log(NAME)`, and the core (and log's query
lines, which CoreDNS writes without a plugin) through `core_log`, giving the message alone: the one
formatter, `CoreDNSFormat`, puts the prefix in front of it from the record's level and the logger's
plugin as the message is logged, so that what a handler or a test reads of a record is the whole
line. All write to the `portolan` logger; a plugin's records carry its name (`record.plugin`). The
process's handler writes each message as it is (dnsserver.cli).
"""
from __future__ import annotations

import logging
from typing import Any

# CoreDNS's level names: Python's CRITICAL is CoreDNS's FATAL (loop's exit).
LEVEL_NAMES = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARNING", logging.ERROR: "ERROR",
               logging.CRITICAL: "FATAL"}


class CoreDNSFormat:
    """The one formatter of the log's prefixes: `[LEVEL] ` and, for a plugin, `plugin/NAME: `."""

    def __init__(self, plugin: str | None) -> None:
        self.plugin = plugin
        self._prefixes = {level: self.prefix(level) for level in LEVEL_NAMES}

    def prefix(self, level: int) -> str:
        tag = f"[{LEVEL_NAMES.get(level, logging.getLevelName(level))}] "
        return tag if self.plugin is None else f"{tag}plugin/{self.plugin}: "

    def __call__(self, level: int, msg: str) -> str:
        prefix = self._prefixes.get(level)
        return (prefix if prefix is not None else self.prefix(level)) + msg


class Log(logging.LoggerAdapter[logging.Logger]):
    """A logger whose messages come out with CoreDNS's prefix (see `CoreDNSFormat`)."""

    def __init__(self, logger: logging.Logger, fmt: CoreDNSFormat) -> None:
        super().__init__(logger, {"plugin": fmt.plugin or ""})
        self.fmt = fmt

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            # One frame more: the record names the caller of this adapter, not the adapter.
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
            kwargs.setdefault("extra", self.extra)
            self.logger.log(level, self.fmt(level, str(msg)), *args, **kwargs)


def plugin_log(plugin: str) -> Log:
    """The logger of plugin `plugin`."""
    return Log(logging.getLogger("portolan"), CoreDNSFormat(plugin))


core_log = Log(logging.getLogger("portolan"), CoreDNSFormat(None))
