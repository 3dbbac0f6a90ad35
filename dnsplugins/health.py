"""health: an HTTP liveness endpoint, `/health`, answering 200 OK while the process runs.

## Syntax

```
health [ADDRESS] {
    lameduck DURATION
}
```

* **ADDRESS** defaults to `:8080` (every interface). The endpoint belongs to the process, not to a
  server block: blocks naming the same address share it, and it survives a reload.
* `lameduck` keeps the process answering DNS and saying OK on `/health` for DURATION after SIGTERM
  before it stops, so that Kubernetes can take the pod out of its Service first.

## Examples

```corefile
. {
    health localhost:8091 {
        lameduck 5s
    }
    whoami
}
```
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from corefile import Dispenser
from dnsserver.durations import parse_duration
from dnsserver.httpendpoints import address_arg
from dnsserver.logs import plugin_log
from dnsserver.plugin import Plugin, SetupContext

log = plugin_log("health")
DEFAULT_ADDRESS = ":8080"


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="OK")


class Health(Plugin):
    """`health`: an HTTP endpoint that says OK while the process runs (config only)."""

    name = "health"
    in_chain = False

    def __init__(self, address: str, lameduck: float) -> None:
        self.address = address
        self.lameduck = lameduck

    async def on_shutdown(self) -> None:
        if self.lameduck > 0:
            log.info("Going into lameduck mode for %gs", self.lameduck)
            await asyncio.sleep(self.lameduck)


def setup(d: Dispenser, ctx: SetupContext) -> Health:
    address, lameduck = DEFAULT_ADDRESS, 0.0
    while d.next():
        address = address_arg(d, address, 8080)
        while d.next_block():
            if d.val() != "lameduck":
                raise d.unknown_property()
            a = d.remaining_args()
            if len(a) != 1:
                raise d.arg_err()
            try:
                lameduck = parse_duration(a[0])
            except ValueError as e:
                raise d.err(f"unable to parse lameduck duration value: {e}") from None
    ctx.http.add(address, 8080, "/health", _ok)
    return Health(address, lameduck)
