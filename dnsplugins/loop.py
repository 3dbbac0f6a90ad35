"""loop: detect at start-up that queries forwarded upstream come back to this server, and stop.

## Syntax

```
loop
```

Once the server is listening, the plugin sends itself a query for `<random>.<random>.ZONE` type
HINFO, where ZONE is the first zone of its server block, and keeps trying for up to 30 seconds
until that query gets a reply (any reply). The query travels through the block's plugins like any
other. If the plugin sees its own query arrive more than twice, the query is going round in
circles (for example `forward . /etc/resolv.conf` where resolv.conf names this server, or an
upstream that forwards back here), and the process logs, on one line,

```
[FATAL] plugin/loop: Loop (CLIENT -> LISTENER) detected for zone "ZONE",
see https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO NAME"
```

and exits with status 1, rather than serve while every query loops until it times out. Once its
probe has been answered the plugin steps out of the way for good (until the next reload, which
probes again).

This plugin can only be used once per Server Block. It takes no arguments.

## Examples

```corefile
. {
    loop
    forward . 8.8.8.8
}
```
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable

from dnslib import DNSRecord

from corefile import Dispenser
from dnsplugins.forward.upstream import UpstreamError, ask_once, probe_query
from dnsserver.logs import plugin_log
from dnsserver.periodic import cancel_task
from dnsserver.plugin import Next, Plugin, ServerInstance, SetupContext
from dnsserver.request import Request
from dnsserver.wire.consts import TYPE_HINFO

log = plugin_log("loop")

PROBE_WINDOW = 30.0  # seconds during which the probe is retried until answered
RETRY_PAUSE = 1.0  # pause after a probe that got no reply
PROBE_TIMEOUT = 6.0  # longer than forward's 5s deadline: a slow SERVFAIL is an answer, not a loop
DISABLE_DELAY = 2.0  # copies of an answered probe still in flight may yet reveal a loop


def _fatal_exit(message: str) -> None:
    """Log at FATAL and end the process now, as CoreDNS's log.Fatal does: no graceful shutdown."""
    log.critical("%s", message)
    for handler in logging.getLogger().handlers + log.logger.handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(1)


def _hostport(host: str, port: int) -> str:
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]  # an IPv4 client seen through a dual-stack socket, printed as Go prints it
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Loop(Plugin):
    """`loop`: probes at start-up for queries forwarded back to this server, and exits if one loops."""

    name = "loop"
    # Only its own HINFO probe concerns it: every other query may skip it (so a `loop` + `forward` block
    # keeps the relay path), and HINFO queries always run the chain, where the probe is counted.
    fast_safe = True
    sees_qtypes = frozenset({TYPE_HINFO})

    def __init__(self, zone: str, ctx: SetupContext | None = None) -> None:
        self.zone = zone
        self.ctx = ctx
        # Two random numbers, so that no real query and no other server's probe can be mistaken for ours.
        self.qname = f"{random.getrandbits(63)}.{random.getrandbits(63)}.{'' if zone == '.' else zone}"
        self.query = probe_query(self.qname, True, TYPE_HINFO)
        self.seen = 0
        self.disabled = False
        self.address = ""  # where the probe was sent, as printed in the FATAL message
        self.exit: Callable[[str], None] = _fatal_exit  # tests replace it
        self.task: asyncio.Task[None] | None = None
        self.probe_window = PROBE_WINDOW
        self.retry_pause = RETRY_PAUSE
        self.probe_timeout = PROBE_TIMEOUT
        self.disable_delay = DISABLE_DELAY

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        # The probe's name is under the zone by construction: one comparison tells it apart.
        if req.qtype == TYPE_HINFO and not self.disabled and req.name == self.qname:
            self.seen += 1
            if self.seen > 2:
                client = _hostport(req.client_ip, req.client_port)
                self.exit(f'Loop ({client} -> {self.address}) detected for zone "{self.zone}", see '
                          f'https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO {self.qname}"')
        return await next(req)

    async def start(self) -> None:
        instance = self.ctx.instance if self.ctx is not None else None
        if instance is None or self.task is not None:
            return  # built without a running server (unit tests, config checks): nothing to probe
        self.task = asyncio.get_running_loop().create_task(self._probe(instance))

    async def stop(self) -> None:
        task, self.task = self.task, None
        await cancel_task(task)

    def _listener(self, instance: ServerInstance) -> tuple[str, int, str] | None:
        """(host to send to, port, address as the FATAL message prints it) for this block's zone."""
        keys = self.ctx.keys if self.ctx is not None else []
        transport = keys[0].transport if keys else "dns"
        if transport != "dns":
            return None  # a probe in plain DNS cannot reach a tls:// listener
        target, bound = instance.address_for(self.zone), instance.listening_on(self.zone)
        if target is None or bound is None:
            return None
        host, port = bound
        return target[0], target[1], _hostport(host, port) if host else f":{port}"

    async def _probe(self, instance: ServerInstance) -> None:
        await instance.serving.wait()
        found = self._listener(instance)
        if found is None:
            log.debug("no plain DNS listener for %s: not probing", self.zone)
            self.disabled = True
            return
        host, port, self.address = found
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.probe_window
        while loop.time() < deadline:
            if await self._exchange(host, port):
                # Answered: no loop so far. Copies of the probe may still be circling; keep counting a
                # little longer before stepping aside.
                await asyncio.sleep(self.disable_delay)
                break
            self.seen = 0  # a probe that got no answer says nothing; start counting afresh
            await asyncio.sleep(self.retry_pause)
        self.disabled = True

    async def _exchange(self, host: str, port: int) -> bool:
        """Send the HINFO probe over UDP; True if any reply came back in time."""
        try:
            await ask_once(host, port, self.query, self.probe_timeout)
        except (UpstreamError, OSError):
            return False
        return True


def setup(d: Dispenser, ctx: SetupContext) -> Loop:
    d.next()
    if d.next_arg():
        raise d.arg_err()
    zone = ctx.keys[0].zone if ctx.keys else "."
    return Loop(zone, ctx)
