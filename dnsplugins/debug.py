"""debug: show where a plugin failed, and the server's debug messages.

## Syntax

```
debug
```

CoreDNS's `debug` stops the server recovering from a plugin's panic, so that the crash shows where
it happened. A Python server has no such crash to allow: an exception in a plugin already becomes a
SERVFAIL for that query, and taking the process down would only stop every other query. What
`debug` does here instead:

* an exception raised in the block's chain, or by forward relaying a query without it, is logged at
  ERROR level with its traceback (the query's name and type first), as well as being answered with
  SERVFAIL and reported by `errors` if loaded;
* debug-level messages of every plugin and of the server are printed. Like CoreDNS's, this is
  process-wide: one block with `debug` turns them on, and they stay on while any configuration
  with `debug` is running.

`debug` only configures the server: it is never called per query and leaves every path open.

## Examples

```corefile
. {
    debug
    whoami
}
```
"""

from __future__ import annotations

import logging

from corefile import Dispenser
from dnsserver.plugin import Plugin, SetupContext

_logger = logging.getLogger("portolan")
# How many started `debug` plugins there are, and the level to go back to when none is left. Reloads
# start the new configuration before stopping the old, so a count, not a flag, says when to go back.
_active = 0
_level_before = logging.NOTSET


class Debug(Plugin):
    """`debug`: tracebacks of chain errors (Block.debug), and debug logging while it runs."""

    name = "debug"
    in_chain = False
    debugs = True

    def __init__(self) -> None:
        self.started = False  # a configuration that failed to start is stopped without having started

    async def start(self) -> None:
        global _active, _level_before
        if _active == 0:
            _level_before = _logger.level
            _logger.setLevel(logging.DEBUG)
        _active += 1
        self.started = True

    async def stop(self) -> None:
        global _active
        if not self.started:
            return
        self.started = False
        _active -= 1
        if _active == 0:
            _logger.setLevel(_level_before)


def setup(d: Dispenser, ctx: SetupContext) -> Debug:
    while d.next():
        if d.next_arg():
            raise d.arg_err()
    return Debug()
