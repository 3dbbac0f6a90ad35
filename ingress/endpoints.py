"""The ready endpoints behind a Service port, as they may reach nginx: one rule for HTTP
upstreams (model) and TCP/UDP services (l4).

Addresses land unquoted in ``server`` lines. kubewatch already drops EndpointSlice addresses that
are not IPs of the slice's family, but the rule that decides what nginx may see lives here, so each
one is checked again before either consumer sees it.
"""

from __future__ import annotations

from typing import Protocol

from ingress import validate
from ingress.validate import InvalidValue
from kubewatch import EndpointSlice, Service, ServicePort
from kubewatch.services import upstream_endpoints


class ServiceLookup(Protocol):
    """Read access to Services and their EndpointSlices (a kubewatch Store satisfies it)."""

    def service(self, namespace: str, name: str) -> Service | None: ...

    def slices_for_service(self, namespace: str, service: str) -> tuple[EndpointSlice, ...]: ...


def ready_endpoints(
    lookup: ServiceLookup, svc: Service, sp: ServicePort, notes: list[str]
) -> tuple[tuple[str, int], ...]:
    """Ready (ip, port) pairs behind ``sp``, sorted, IPs in canonical form; each one left out
    gets a note."""
    where = f"service {svc.namespace}/{svc.name}"
    good = []
    for address, port in upstream_endpoints(lookup, svc, sp):
        try:
            # Also refuses what ipaddress accepts but nginx must not see: an IPv6 zone.
            ip: str | None = validate.ip(address, "endpoint")
        except InvalidValue:
            ip = None
        if ip is None or not 0 < port < 65536:
            notes.append(f"{where}: endpoint {address!r}:{port} ignored")
            continue
        good.append((ip, port))
    return tuple(good)
