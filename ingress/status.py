"""``.status.loadBalancer.ingress`` of our Ingresses: the address clients should use.

The address comes from ``--publish-status-address`` (a comma list; IPs and host names told
apart), else from the ``--publish-service``: its load-balancer status, else its external IPs,
else its ClusterIPs (an ExternalName Service publishes its name). Only the lease holder
writes (the controller calls ``sync`` only while leading). An Ingress that leaves our class
has the address we wrote removed again, unless someone has written another since.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp

from ingress.metrics import Metrics
from kubewatch import ApiClient, ApiError, Ingress, KubeError, Service
from kubewatch.services import is_ip

log = logging.getLogger(__name__)

Address = dict[str, str]  # {"ip": ...} or {"hostname": ...}


def _entry(value: str) -> Address:
    return {"ip": value} if is_ip(value) else {"hostname": value}


def _sorted(entries: Iterable[Address]) -> list[Address]:
    """De-duplicated, IPs first then host names, each sorted: a stable order, so replicas
    and restarts agree and the status does not flap."""
    unique = {(0, e["ip"]) if "ip" in e else (1, e.get("hostname", "")): e for e in entries}
    return [unique[k] for k in sorted(unique)]


def addresses_from_flag(values: Iterable[str]) -> list[Address]:
    return _sorted(_entry(v.strip()) for v in values if v.strip())


def addresses_from_service(svc: Service | None) -> list[Address] | None:
    """The Service's published addresses; None when it is missing (write nothing then, rather
    than wipe every Ingress's status during a transient)."""
    if svc is None:
        return None
    if svc.load_balancer:
        return _sorted(_entry(a) for a in svc.load_balancer)
    if svc.external_ips:
        return _sorted(_entry(a) for a in svc.external_ips)
    if svc.type == "ExternalName" and svc.external_name:
        return [_entry(svc.external_name)]
    return _sorted(_entry(a) for a in svc.cluster_ips)


def current(ing: Ingress) -> list[Address]:
    lb = ing.status.get("loadBalancer")
    raw = lb.get("ingress") if isinstance(lb, dict) else None
    if not isinstance(raw, list):
        return []
    found: list[Address] = []
    for item in raw:
        if isinstance(item, dict):
            entry = {k: str(item[k]) for k in ("ip", "hostname") if item.get(k)}
            if entry:
                found.append(entry)
    return _sorted(found)


class StatusWriter:
    """Writes the published addresses into our Ingresses' status and clears them from those that left us."""

    def __init__(self, api: ApiClient | None, metrics: Metrics) -> None:
        self.api = api
        self.metrics = metrics
        # (namespace, name) -> the addresses we last wrote there.
        self.written: dict[tuple[str, str], list[Address]] = {}
        self._logged: dict[tuple[str, str], list[Address]] = {}

    async def sync(
        self,
        ours: Iterable[Ingress],
        lookup: Callable[[str, str], Ingress | None],
        addresses: list[Address] | None,
    ) -> int:
        """Bring every Ingress of ours to ``addresses`` and clear those that left us.
        Returns the number of writes."""
        writes = 0
        owned_keys: set[tuple[str, str]] = set()
        for ing in ours:
            key = (ing.namespace, ing.name)
            owned_keys.add(key)
            if addresses is None or current(ing) == addresses:
                if addresses is not None:
                    self.written[key] = addresses
                continue
            if await self._write(ing.namespace, ing.name, addresses):
                self.written[key] = addresses
                writes += 1
        for key in sorted(set(self.written) - owned_keys):
            now = lookup(*key)
            ours_then = self.written.pop(key)
            if now is None or current(now) != ours_then:
                continue  # deleted, or another controller has written its own address
            if await self._write(key[0], key[1], None):
                writes += 1
        return writes

    async def _write(self, namespace: str, name: str, addresses: list[Address] | None) -> bool:
        if self.api is None:
            key = (namespace, name)
            if self._logged.get(key) != addresses:
                self._logged[key] = addresses or []
                log.info("status of Ingress %s/%s: loadBalancer.ingress = %s (not written: no API server)",
                         namespace, name, addresses or [])  # fmt: skip
            return False
        body: dict[str, Any] = {"status": {"loadBalancer": {"ingress": addresses}}}
        path = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses/{name}/status"
        try:
            await self.api.request("PATCH", path, body=body, content_type="application/merge-patch+json")
        except (KubeError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            if isinstance(exc, ApiError) and exc.status == 404:
                return False  # deleted meanwhile
            self.metrics.status_updates.labels("error").inc()
            log.warning("status of Ingress %s/%s: %s", namespace, name, exc)
            return False
        self.metrics.status_updates.labels("cleared" if addresses is None else "set").inc()
        log.info("status of Ingress %s/%s: loadBalancer.ingress = %s", namespace, name, addresses or [])
        return True
