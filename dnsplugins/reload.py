"""reload: re-read the Corefile (and every file it imports) when it changes, without dropping queries.

## Syntax

```
reload [INTERVAL] [JITTER]
```

* **INTERVAL** between checks, default 30s, at least 2s.
* **JITTER** added or taken off each interval at random, default 15s, at least 1s, at most INTERVAL/2.

The check compares a SHA512 over the Corefile and its imports. A new Corefile that does not load is
logged and counted in `coredns_reload_failed_total`, and the running configuration keeps serving;
it is not tried again until the files change again. A good one replaces the running configuration:
listeners whose address is unchanged keep their sockets, so no query is lost. SIGUSR1 reloads at once.
Metrics: `coredns_reload_failed_total`, `coredns_reload_version_info{hash="sha512",value}`.

## Examples

```corefile
. {
    reload 10s 2s
    whoami
}
```
"""

from __future__ import annotations

import random

from corefile import Dispenser
from dnsserver.durations import parse_duration
from dnsserver.logs import plugin_log
from dnsserver.periodic import Periodic
from dnsserver.plugin import Plugin, ServerInstance, SetupContext

log = plugin_log("reload")

DEFAULT_INTERVAL, DEFAULT_JITTER = 30.0, 15.0
MIN_INTERVAL, MIN_JITTER = 2.0, 1.0


class Reload(Plugin):
    """`reload`: checks the Corefile now and then and reloads the server when it changed."""

    name = "reload"
    in_chain = False
    announces_config = True  # the server logs each configuration's digest once it serves

    def __init__(self, interval: float, jitter: float, instance: ServerInstance | None) -> None:
        self.interval = interval
        self.jitter = jitter
        self.instance = instance
        self.periodic = Periodic(lambda: interval + random.uniform(-jitter, jitter), self.check, "plugin/reload")

    async def start(self) -> None:
        if self.instance is not None and self.instance.path is not None:
            self.periodic.start()

    async def stop(self) -> None:
        await self.periodic.stop()

    def check(self) -> None:
        instance = self.instance
        if instance is not None and instance.needs_reload():
            # Reloading stops this plugin; run it in the instance's own task, not in ours.
            instance.reload_soon()


def setup(d: Dispenser, ctx: SetupContext) -> Reload:
    interval, jitter = DEFAULT_INTERVAL, DEFAULT_JITTER
    while d.next():
        args = d.remaining_args()
        if len(args) > 2:
            raise d.arg_err()
        try:
            if args:
                interval = parse_duration(args[0])
            if len(args) > 1:
                jitter = parse_duration(args[1])
        except ValueError as e:
            raise d.err(str(e)) from None
        if interval < MIN_INTERVAL:
            raise d.err(f"interval value must be greater or equal to {MIN_INTERVAL:g}s")
        if jitter < MIN_JITTER:
            raise d.err(f"jitter value must be greater or equal to {MIN_JITTER:g}s")
        jitter = min(jitter, interval / 2)
        while d.next_block():
            raise d.unknown_property()
    return Reload(interval, jitter, ctx.instance)
