"""The controller's own HTTP endpoints: ``/healthz`` (for probes) and ``/metrics``
(Prometheus exposition), on one port or two."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ingress.metrics import CONTENT_TYPE_LATEST, Metrics

log = logging.getLogger(__name__)


class StatusServer:
    """Serves /healthz and /metrics for the controller, on one port or two."""

    def __init__(
        self,
        address: str,
        healthz_port: int,
        metrics_port: int | None,
        metrics: Metrics,
        health: Callable[[], tuple[bool, str]],
        statuses: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        """``statuses``: the objects whose status we own, for ``GET /status``."""
        self.statuses = statuses
        self.address = address
        self.healthz_port = healthz_port
        self.metrics_port = metrics_port
        self.metrics = metrics
        self.health = health
        self._runners: list[web.AppRunner] = []
        self.ports: dict[str, int] = {}

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, reason = self.health()
        return web.Response(status=200 if ok else 503, text=reason + "\n")

    async def _status(self, request: web.Request) -> web.Response:
        items = self.statuses() if self.statuses is not None else []
        return web.json_response({"items": items})

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        # Streamed, yielding to the loop between pieces: with request metrics for 10,000 hosts
        # the text is a million lines, which must not hold up reconciles or the webhook.
        # name[]=...: only those metrics, as prometheus_client's own handler allows.
        names = request.query.getall("name[]", [])
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
        await response.prepare(request)
        for piece in self.metrics.exposition(frozenset(names) if names else None):
            await response.write(piece)
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    async def _serve(self, port: int, routes: list[web.RouteDef]) -> int:
        app = web.Application()
        app.add_routes(routes)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.address, port)
        await site.start()
        self._runners.append(runner)
        bound = runner.addresses[0][1] if runner.addresses else port
        return int(bound)

    async def start(self) -> None:
        if self.healthz_port < 0:
            return
        health = web.get("/healthz", self._healthz)
        status = web.get("/status", self._status)
        metrics = web.get("/metrics", self._metrics)
        # Port 0 is "any free port": two zeros mean two servers, not one.
        if self.metrics_port is None or (self.metrics_port == self.healthz_port and self.metrics_port != 0):
            port = await self._serve(self.healthz_port, [health, status, metrics])
            self.ports = {"healthz": port, "metrics": port}
        else:
            self.ports = {
                "healthz": await self._serve(self.healthz_port, [health, status]),
                "metrics": await self._serve(self.metrics_port, [metrics]),
            }
        log.info("health on %s:%d/healthz, metrics on %s:%d/metrics",
                 self.address, self.ports["healthz"], self.address, self.ports["metrics"])  # fmt: skip

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
