"""Leader election on a coordination.k8s.io/v1 Lease, in client-go's manner.

Every replica renders and serves its own nginx; the lease only decides which one writes
Ingress status, so replicas do not fight over ``.status.loadBalancer``.

* A candidate reads the Lease every ``retry`` seconds. It takes it when there is none, when
  the holder is empty (released), or when the record has not changed for
  ``leaseDurationSeconds`` as measured on the candidate's own clock from when it first saw
  that record. Using the local observation time, not the holder's ``renewTime``, makes
  clock skew between nodes harmless.
* The leader renews every ``retry`` seconds; if no renewal succeeds for ``renew_deadline``
  it steps down (before the lease can expire for the others: renew_deadline < duration).
* Writes carry the resourceVersion they read, so two candidates racing for an expired lease
  cannot both win: the API server answers 409 to the second.
* On a clean stop the leader releases the lease (empty holder) so another replica takes over
  at its next retry instead of waiting out the duration.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from ingress.clock import Clock, MonotonicClock
from kubewatch import ApiClient, ApiError, KubeError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """Leader election periods in seconds: lease duration, renew deadline, retry interval (client-go's defaults)."""

    duration: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0


def micro_time() -> str:
    """metav1.MicroTime: RFC 3339 with microseconds, UTC."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Takes, renews and releases the Lease that decides which replica writes Ingress status."""

    def __init__(
        self,
        api: ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        timing: LeaseTiming = LeaseTiming(),
        clock: Clock | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self.clock = clock or MonotonicClock()
        self.on_change = on_change
        self.is_leader = False
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._last_renew = 0.0

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    def _set_leader(self, value: bool) -> None:
        if value == self.is_leader:
            return
        self.is_leader = value
        log.info("%s %s the lease %s/%s", self.identity, "acquired" if value else "lost", self.namespace, self.name)
        if self.on_change is not None:
            self.on_change(value)

    async def run(self) -> None:
        while True:
            await self.step()
            await self.clock.sleep(self.timing.retry)

    async def step(self) -> bool:
        """One attempt to acquire or renew; returns whether we lead afterwards."""
        try:
            ok = await self._try_acquire_or_renew()
        except (KubeError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            ok = False
        now = self.clock.now()
        if ok:
            self._last_renew = now
            self._set_leader(True)
        elif self.is_leader and now - self._last_renew >= self.timing.renew_deadline:
            self._set_leader(False)
        elif self.is_leader and self._observed is not None and self._observed[0] != self.identity:
            self._set_leader(False)  # someone else holds it now: stop writing at once
        return self.is_leader

    def _spec(self, transitions: int, acquire_time: str | None) -> dict[str, Any]:
        now = micro_time()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.timing.duration)),
            "acquireTime": acquire_time or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _observe(self, spec: dict[str, Any]) -> None:
        record = (
            spec.get("holderIdentity") or "",
            spec.get("renewTime"),
            spec.get("acquireTime"),
            spec.get("leaseTransitions"),
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = self.clock.now()

    async def _try_acquire_or_renew(self) -> bool:
        try:
            lease = await self.api.request("GET", f"{self.path}/{self.name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(0, None),
            }
            try:
                created = await self.api.request("POST", self.path, body=body)
            except ApiError as exc2:
                if exc2.status == 409:
                    return False  # another replica created it first
                raise
            self._observe(created.get("spec") or {})
            return True
        spec = lease.get("spec") or {}
        self._observe(spec)
        holder = spec.get("holderIdentity") or ""
        duration = spec.get("leaseDurationSeconds") or self.timing.duration
        if holder and holder != self.identity and self.clock.now() < self._observed_at + float(duration):
            return False  # held, and renewed within its duration as far as we have seen
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder != self.identity:
            transitions += 1
            acquire = None
        else:
            acquire = spec.get("acquireTime")
        lease["spec"] = self._spec(transitions, acquire)
        try:
            updated = await self.api.request("PUT", f"{self.path}/{self.name}", body=lease)
        except ApiError as exc:
            if exc.status == 409:
                return False  # lost a race: someone wrote the lease since we read it
            raise
        self._observe(updated.get("spec") or {})
        return True

    async def release(self) -> None:
        """Give the lease up if we hold it (clean shutdown)."""
        was_leader = self.is_leader
        self._set_leader(False)
        if not was_leader:
            return
        try:
            lease = await self.api.request("GET", f"{self.path}/{self.name}")
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            lease["spec"] = {**spec, "holderIdentity": "", "renewTime": micro_time(), "leaseDurationSeconds": 1}
            await self.api.request("PUT", f"{self.path}/{self.name}", body=lease)
            log.info("%s released the lease %s/%s", self.identity, self.namespace, self.name)
        except (KubeError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)
