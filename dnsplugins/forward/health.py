"""Health checking of one upstream: a probe loop started by a failed exchange, stopped by a reply.

The probe is `. IN NS` (or `health_check ... domain NAME`) with RD set unless `no_rec`, sent over
the upstream's transport (TCP with `force_tcp`, TLS for `tls://`). Any DNS reply, whatever its
rcode, means healthy: it resets the failure count and ends the loop. Each failed probe adds one;
an upstream with more than `max_fails` is "down" and skipped until a probe succeeds.

This is not a Periodic job: it runs only while the upstream is in trouble and ends itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from dnsplugins.forward.metrics import METRICS, ForwardMetrics
from dnsplugins.forward.upstream import Upstream, UpstreamError, probe_query
from dnsserver.logs import plugin_log
from dnsserver.periodic import cancel_task

log = plugin_log("forward")

PROBE_TIMEOUT = 1.0  # seconds a probe waits for its reply (CoreDNS's health-check read timeout)
MIN_INTERVAL = 0.01  # `health_check 0` must not turn a dead upstream into a busy loop


class HealthCheck:
    """Health checks of one upstream: a probe query now and then while it is marked down."""

    def __init__(
        self,
        upstream: Upstream,
        interval: float,
        *,
        recursion_desired: bool = True,
        domain: str = ".",
        tcp: bool = False,
        metrics: ForwardMetrics = METRICS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.upstream = upstream
        self.interval = interval
        self.query = probe_query(domain, recursion_desired)
        self.tcp = tcp
        self.timeout = PROBE_TIMEOUT
        self.metrics = metrics
        self.sleep = sleep  # injectable: tests step the loop without waiting
        self.task: asyncio.Task[None] | None = None
        self.probes = 0

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def trigger(self) -> None:
        if self.upstream.closed or self.running:
            return
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self.upstream.closed:
            if await self.check():
                return
            await self.sleep(max(self.interval, MIN_INTERVAL))

    async def check(self) -> bool:
        """One probe: True (and the failure count reset) if the upstream answered anything."""
        up = self.upstream
        self.probes += 1
        try:
            await up.exchange(self.query, self.tcp, self.timeout, pooled=False)
        except UpstreamError as e:
            up.fails += 1
            self.metrics.hc_failure(up.addr)
            log.debug("health check of %s failed (%d): %s", up.addr, up.fails, e)
            return False
        if up.fails:
            log.debug("%s is healthy again", up.addr)
        up.fails = 0
        return True

    async def stop(self) -> None:
        task, self.task = self.task, None
        await cancel_task(task)
