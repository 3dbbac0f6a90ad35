"""ready: an HTTP readiness endpoint, `/ready`, that is 200 only once every plugin is ready.

## Syntax

```
ready [ADDRESS] {
    monitor until-ready|continuously
}
```

* **ADDRESS** defaults to `:8181`.
* Every plugin in the server blocks that load `ready` and that can tell whether it is ready (the
  kubernetes plugin: its watches have synced) is asked. All ready: 200 `OK`. Otherwise 503 and the
  names of the plugins that are not, comma-separated.
* `monitor until-ready` (the default) stops asking a plugin once it has said yes; `continuously`
  keeps asking. During shutdown (lameduck) the endpoint answers 503.

## Examples

```corefile
. {
    ready 127.0.0.1:8181
    whoami
}
```
"""

from __future__ import annotations

from aiohttp import web

from corefile import Dispenser
from dnsserver.httpendpoints import address_arg
from dnsserver.plugin import Plugin, Readiness, SetupContext

DEFAULT_ADDRESS = ":8181"


class Ready(Plugin):
    """`ready`: an HTTP endpoint that says OK once every plugin that reports readiness is ready."""

    name = "ready"
    in_chain = False

    def __init__(self, address: str, continuously: bool) -> None:
        self.address = address
        self.continuously = continuously
        self.checks: list[Readiness] = []
        self.confirmed: set[str] = set()
        self.shutting_down = False

    def monitor(self, checks: list[Readiness]) -> None:
        self.checks = list(checks)

    def not_ready(self) -> list[str]:
        waiting: list[str] = []
        for name, check in self.checks:
            if name in self.confirmed:
                continue
            if check():
                if not self.continuously:
                    self.confirmed.add(name)
            elif name not in waiting:
                waiting.append(name)
        return sorted(waiting)

    async def handle(self, request: web.Request) -> web.Response:
        if self.shutting_down:
            return web.Response(status=503, text="shutting down")
        waiting = self.not_ready()
        if waiting:
            return web.Response(status=503, text=",".join(waiting))
        return web.Response(text="OK")

    async def on_shutdown(self) -> None:
        self.shutting_down = True


def setup(d: Dispenser, ctx: SetupContext) -> Ready:
    address, continuously = DEFAULT_ADDRESS, False
    while d.next():
        address = address_arg(d, address, 8181)
        while d.next_block():
            if d.val() != "monitor":
                raise d.unknown_property()
            a = d.remaining_args()
            if len(a) != 1 or a[0] not in ("until-ready", "continuously"):
                raise d.arg_err()
            continuously = a[0] == "continuously"
    plugin = Ready(address, continuously)
    ctx.http.add(address, 8181, "/ready", plugin.handle)
    return plugin
