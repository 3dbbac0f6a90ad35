"""errors: log the errors raised while answering a query, optionally grouped.

## Syntax

```
errors {
    stacktrace
    consolidate DURATION REGEXP [LEVEL] [show_first]
}
```

Without this plugin a failing plugin still gives the client a SERVFAIL, but nothing is logged. With
it, every error raised further down the chain is logged as

```
[ERROR] plugin/errors: 2 example.org. A: plugin/hosts: <what went wrong>
```

(2 is SERVFAIL's rcode, then the query name and type, then the error, which names the plugin that
raised it) and the client gets a SERVFAIL. A query that no plugin answered is logged with the error
`no next plugin found`.

* `stacktrace` adds the Python traceback to each logged error.
* `consolidate` counts the errors whose text matches **REGEXP** (a regular expression, searched
  anywhere in the text, at most 10000 characters) instead of logging each one. **DURATION** after
  the first of them, one line says how many there were:
  `[ERROR] plugin/errors: 3 errors like '^read udp .* i/o timeout$' occurred in last 30s`.
  **LEVEL** is `warning`, `error` (default), `info` or `debug`. With `show_first` the first error of
  each period is also logged in full, at LEVEL, and a period with just that one error prints no
  summary. An error is counted by the first `consolidate` line that matches it. Because errors here
  carry the `plugin/NAME: ` prefix and CoreDNS's often do not, REGEXP is tried on the text both with
  and without that prefix, so patterns written for CoreDNS (`^read udp ...`) still match.
* `errors stdout` is accepted, as in CoreDNS; output always goes to the process log.

This plugin can only be used once per Server Block.

## Examples

```corefile
example.org {
    errors
    whoami
}
```

```corefile
. {
    errors {
        consolidate 5m ".* i/o timeout$" warning
        consolidate 30s "^Failed to .+" error show_first
    }
    whoami
}
```
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from dnslib import DNSRecord

from corefile import Dispenser
from dnsplugins import duration_arg
from dnsserver.durations import go_duration
from dnsserver.logs import plugin_log
from dnsserver.plugin import Next, Plugin, PluginError, SetupContext
from dnsserver.request import Request
from dnsserver.wire.consts import SERVFAIL
from dnsserver.wire.views import QueryView

log = plugin_log("errors")

MAX_REGEXP = 10000
NO_NEXT = "no next plugin found"

LEVELS: dict[str, int] = {"warning": logging.WARNING, "error": logging.ERROR, "info": logging.INFO,
                          "debug": logging.DEBUG}


class Cancellable(Protocol):
    """What a scheduled callback returns: something that can be cancelled (asyncio's TimerHandle)."""

    def cancel(self) -> None: ...


# schedule(delay_seconds, callback) -> something with cancel(): asyncio's call_later by default.
Scheduler = Callable[[float, Callable[[], None]], Cancellable]


@dataclass
class Consolidate:
    """One `consolidate` line."""

    period: float
    regexp: str
    level: str = "error"
    show_first: bool = False
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.pattern = re.compile(self.regexp)

    def matches(self, texts: tuple[str, ...]) -> bool:
        return any(self.pattern.search(t) for t in texts)


@dataclass
class ErrorsConfig:
    """The `errors` directive parsed: stack traces on or off, and its `consolidate` lines."""

    stacktrace: bool = False
    consolidate: list[Consolidate] = field(default_factory=list)


class _Window:
    """The errors counted for one `consolidate` line in the current period."""

    __slots__ = ("count", "handle")

    def __init__(self) -> None:
        self.count = 0
        self.handle: Cancellable | None = None


class Errors(Plugin):
    """`errors`: logs the errors of the plugins after it, or counts them per `consolidate` period."""

    name = "errors"
    fast_safe = True  # it only acts on exceptions, and a stored answer raises none

    def __init__(self, config: ErrorsConfig, schedule: Scheduler | None = None) -> None:
        self.config = config
        self.windows = [_Window() for _ in config.consolidate]
        self.stopped = False
        self._schedule = schedule

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        try:
            reply = await next(req)
        except Exception as e:
            self.report(req, e)
            req.answered_by = ""  # the SERVFAIL the server would have written: no plugin label
            return req.reply(SERVFAIL)
        if reply is None:
            self.report(req, None)
        return reply

    def schedule(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        if self._schedule is not None:
            return self._schedule(delay, callback)
        return asyncio.get_running_loop().call_later(delay, callback)

    def report(self, req: QueryView, error: BaseException | None) -> None:
        """Log `error` (None: nobody answered) for `req`, or count it if a `consolidate` line wants it."""
        text, bare = _texts(error)
        for i, c in enumerate(self.config.consolidate):
            if c.matches((text, bare) if bare is not None else (text,)):
                if self._count(i, req, text):
                    return
                break
        exc_info = error if self.config.stacktrace and error is not None else None
        log.error("%d %s %s: %s", SERVFAIL, req.name, req.type_name, text,
                  exc_info=exc_info)

    def _count(self, i: int, req: QueryView, text: str) -> bool:
        """Count one error for consolidate line `i`; False if it must be logged the ordinary way."""
        if self.stopped:
            return False
        c, w = self.config.consolidate[i], self.windows[i]
        w.count += 1
        if w.count == 1:
            w.handle = self.schedule(c.period, lambda: self.flush(i))
            if c.show_first:
                log.log(LEVELS[c.level], "%d %s %s: %s", SERVFAIL, req.name, req.type_name,
                        text)
        return True

    def flush(self, i: int) -> None:
        """End consolidate line `i`'s period: print its summary line, if there is anything to say."""
        c, w = self.config.consolidate[i], self.windows[i]
        count, w.count, w.handle = w.count, 0, None
        if count == 0 or (count == 1 and c.show_first):
            return  # nothing happened, or the one error was already shown in full
        log.log(LEVELS[c.level], "%d errors like '%s' occurred in last %s", count, c.regexp,
                go_duration(c.period))

    async def stop(self) -> None:
        # Errors counted so far would be lost with the old configuration: report them now.
        self.stopped = True
        for i, w in enumerate(self.windows):
            if w.handle is not None:
                w.handle.cancel()
                self.flush(i)


def _texts(error: BaseException | None) -> tuple[str, str | None]:
    """The error's text as logged ("plugin/NAME: cause"), and the cause alone for pattern matching."""
    if error is None:
        return NO_NEXT, None
    if isinstance(error, PluginError):
        cause = str(error.cause) or type(error.cause).__name__
        return f"plugin/{error.plugin}: {cause}", cause
    return str(error) or type(error).__name__, None


def parse(d: Dispenser) -> ErrorsConfig:
    cfg = ErrorsConfig()
    while d.next():
        args = d.remaining_args()
        if len(args) > 1:
            raise d.arg_err()
        if args and args[0] != "stdout":
            raise d.err(f"invalid log file: {args[0]}")
        while d.next_block():
            prop = d.val()
            if prop == "stacktrace":
                if d.remaining_args():
                    raise d.arg_err()
                cfg.stacktrace = True
            elif prop == "consolidate":
                cfg.consolidate.append(_consolidate(d))
            else:
                raise d.unknown_property()
    return cfg


def _consolidate(d: Dispenser) -> Consolidate:
    args = d.remaining_args()
    if not 2 <= len(args) <= 4:
        raise d.arg_err()
    period = duration_arg(d, args[0])
    if period <= 0:
        raise d.err(f"consolidate period must be positive: {args[0]}")
    if len(args[1]) > MAX_REGEXP:
        raise d.err(f"consolidate regexp is longer than {MAX_REGEXP} characters")
    level, show_first = "", False
    for opt in args[2:]:
        if opt in LEVELS and not level:
            level = opt
        elif opt == "show_first" and not show_first:
            show_first = True
        else:
            raise d.arg_err()
    try:
        return Consolidate(period, args[1], level or "error", show_first)
    except (re.error, OverflowError, RecursionError) as e:  # a huge {n}, deep nesting: not re.error
        raise d.err(f"invalid regexp {args[1]!r}: {e}") from None


def setup(d: Dispenser, ctx: SetupContext) -> Errors:
    return Errors(parse(d))
