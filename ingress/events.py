"""Kubernetes Events about Ingresses (why one was left out), or log lines without an API.

Each (Ingress version, reason, message) is reported once: a reconcile that meets the same
broken Ingress again does not post another Event, a new version of it does.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket

from ingress.metrics import Metrics
from kubewatch import ApiClient, KubeError

log = logging.getLogger(__name__)

COMPONENT = "portolan-ingress"
MAX_MESSAGE = 1024


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Posts Warning Events about Ingresses (logs them without an API), each Ingress version and message once."""

    def __init__(
        self, api: ApiClient | None, metrics: Metrics, *, controller: str, instance: str | None = None
    ) -> None:
        self.api = api
        self.metrics = metrics
        self.controller = controller
        self.instance = instance or socket.gethostname()
        self._seen: set[tuple[str, str, str, str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def warning(self, namespace: str, name: str, uid: str, resource_version: str, reason: str, message: str) -> bool:
        """Report once per Ingress version; returns True if this was new."""
        key = (namespace, name, resource_version, reason, message)
        if key in self._seen:
            return False
        self._seen.add(key)
        self.metrics.events.labels(reason).inc()
        log.warning("Ingress %s/%s: %s: %s", namespace, name, reason, message)
        if self.api is not None:
            task = asyncio.create_task(self._post(namespace, name, uid, resource_version, reason, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    def forget(self, keep: set[tuple[str, str]]) -> None:
        """Drop memory of Ingresses that no longer exist (``keep``: (namespace, name))."""
        self._seen = {k for k in self._seen if (k[0], k[1]) in keep}

    def event_body(
        self, namespace: str, name: str, uid: str, resource_version: str, reason: str, message: str
    ) -> dict[str, object]:
        now = _now()
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "namespace": namespace,
                "name": name,
                "uid": uid,
                "resourceVersion": resource_version,
            },
            "reason": reason,
            "message": message[:MAX_MESSAGE],
            "type": "Warning",
            "source": {"component": COMPONENT, "host": self.instance},
            "reportingComponent": self.controller,
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }

    async def _post(self, namespace: str, name: str, uid: str, rv: str, reason: str, message: str) -> None:
        assert self.api is not None
        body = self.event_body(namespace, name, uid, rv, reason, message)
        try:
            await self.api.request("POST", f"/api/v1/namespaces/{namespace}/events", body=body)
        except (KubeError, OSError, TimeoutError) as exc:
            log.warning("could not post Event for Ingress %s/%s: %s", namespace, name, exc)
        except Exception as exc:  # aiohttp errors and the like: an Event is never worth a crash
            log.warning("could not post Event for Ingress %s/%s: %r", namespace, name, exc)

    async def drain(self, timeout: float = 5.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
