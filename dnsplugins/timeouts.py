"""timeouts: how long TCP and DNS-over-TLS connections may take, and how many queries each may ask.

## Syntax

```
timeouts {
    read DURATION
    write DURATION
    idle DURATION
    maxtcpqueries MAXIMUM
}
```

* `read`: a new connection's first query, and the rest of any query that has begun to arrive, must
  come within DURATION; default 3s.
* `write`: a connection whose replies wait to leave (the client does not read them) and make no
  progress for DURATION is dropped; default 5s.
* `idle`: a connection with no query in flight and nothing arriving is closed after DURATION;
  default 10s.
* `maxtcpqueries`: after MAXIMUM queries the connection reads no more and is closed once they are
  answered; `-1` (the default) for no limit.

A DURATION is a Go duration (`10s`, `1m`) or a number of seconds, between 1 second and 24 hours. At
least one setting is required. UDP is not affected. The settings apply to every TCP and TLS listener
of the block; when blocks share a listener, the first block (in Corefile order) that has `timeouts`
sets them. `timeouts` only configures listeners: it is never called per query.

## Examples

```corefile
tls://.:5553 {
    tls cert.pem key.pem
    timeouts {
        read 10s
        write 20s
        idle 60s
    }
    whoami
}
```

```corefile
. {
    timeouts {
        idle 30s
        maxtcpqueries 128
    }
    whoami
}
```
"""

from __future__ import annotations

import dataclasses

from corefile import Dispenser
from dnsserver.durations import format_duration, parse_duration
from dnsserver.plugin import ListenOptions, Plugin, SetupContext, StreamTimeouts

MIN_TIMEOUT, MAX_TIMEOUT = 1.0, 24 * 3600.0


class Timeouts(Plugin):
    """`timeouts`: sets its block's TCP and TLS connection timeouts (config only)."""

    name = "timeouts"
    in_chain = False

    def __init__(self, timeouts: StreamTimeouts) -> None:
        self.timeouts = timeouts

    def listener_options(self, opts: ListenOptions) -> None:
        opts.timeouts = self.timeouts


def _duration(d: Dispenser, text: str) -> float:
    """A duration as CoreDNS reads it: whole seconds when a plain number, else a Go duration."""
    try:
        seconds = float(int(text)) if text.lstrip("-").isdigit() else parse_duration(text)
    except ValueError as e:
        raise d.err(str(e)) from None
    if not MIN_TIMEOUT <= seconds <= MAX_TIMEOUT:
        raise d.err(f"timeout provided '{format_duration(seconds)}' needs to be between 1 second and 24 hours")
    return seconds


def _max_queries(d: Dispenser, text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise d.err(f"invalid value for maxtcpqueries '{text}'") from None
    if n == 0 or n < -1:
        raise d.err(f"maxtcpqueries provided '{n}' needs to be -1 (unlimited) or a positive integer")
    return n


def setup(d: Dispenser, ctx: SetupContext) -> Timeouts:
    t = StreamTimeouts()
    while d.next():
        if d.next_arg():
            raise d.arg_err()
        settings = 0
        while d.next_block():
            prop = d.val()
            if prop not in ("read", "write", "idle", "maxtcpqueries"):
                raise d.err(f"unknown option: '{prop}'")  # CoreDNS's wording for this plugin
            args = d.remaining_args()
            if len(args) != 1:
                raise d.arg_err()
            if prop == "maxtcpqueries":
                t = dataclasses.replace(t, max_queries=_max_queries(d, args[0]))
            elif prop == "read":
                t = dataclasses.replace(t, read=_duration(d, args[0]))
            elif prop == "write":
                t = dataclasses.replace(t, write=_duration(d, args[0]))
            else:
                t = dataclasses.replace(t, idle=_duration(d, args[0]))
            settings += 1
        if settings == 0:
            raise d.err("timeouts block with no timeouts specified")
    return Timeouts(t)
