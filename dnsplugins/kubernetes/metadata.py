"""kubernetes as a metadata provider: the parts of a cluster name, as CoreDNS's parseRequest reads them."""

from __future__ import annotations

from dataclasses import dataclass

from dnsserver.plugin import match_zone
from dnsserver.request import Request

INVALID = "invalid query name"  # CoreDNS's errInvalidRequest text


@dataclass(frozen=True)
class NameParts:
    """The labels of `[ENDPOINT.]SERVICE.NAMESPACE.(svc|pod).ZONE` or `_PORT._PROTO.SERVICE...`."""

    kind: str = ""
    namespace: str = ""
    service: str = ""
    endpoint: str = ""
    port: str = ""
    protocol: str = ""
    cluster: str = ""  # multicluster zones: ENDPOINT.CLUSTER.SERVICE...


def parse_name(name: str, zone: str, multicluster: bool = False) -> NameParts:
    """`name`'s parts below `zone` (both lower-case FQDNs); ValueError(INVALID) when they make no cluster name.
    In a multicluster zone two labels left of the service, neither starting with "_", are ENDPOINT.CLUSTER."""
    base = name[: len(name) - len(zone)].rstrip(".") if zone != "." else name.rstrip(".")
    segs = [s for s in base.split(".") if s]
    if not segs or base in ("svc", "pod"):
        return NameParts()
    kind = segs.pop()
    if kind not in ("svc", "pod"):
        raise ValueError(INVALID)
    ns = segs.pop() if segs else ""
    svc = segs.pop() if segs else ""
    if len(segs) == 0:
        return NameParts(kind, ns, svc)
    if len(segs) == 1:
        return NameParts(kind, ns, svc, endpoint=segs[0])
    if len(segs) == 2 and multicluster and not segs[0].startswith("_") and not segs[1].startswith("_"):
        return NameParts(kind, ns, svc, endpoint=segs[0], cluster=segs[1])
    if len(segs) == 2:
        return NameParts(kind, ns, svc, port=segs[0].removeprefix("_"), protocol=segs[1].removeprefix("_"))
    raise ValueError(INVALID)  # (CoreDNS's zonal names are not served here)


def note_metadata(req: Request, zones: list[str], multicluster: list[str] | None = None) -> None:
    """Set the kubernetes/* labels for `req` if its name is in `zones` (kubernetes/cluster too in the
    `multicluster` ones, as CoreDNS does)."""
    zone = match_zone(zones, req.name)
    if zone is None:
        return
    mc = zone in (multicluster or ())
    try:
        parts = parse_name(req.name, zone, mc)
    except ValueError as e:
        req.set_meta("kubernetes/parse-error", str(e))
        return
    req.set_meta("kubernetes/port-name", parts.port)
    req.set_meta("kubernetes/protocol", parts.protocol)
    req.set_meta("kubernetes/endpoint", parts.endpoint)
    if mc:
        req.set_meta("kubernetes/cluster", parts.cluster)
    req.set_meta("kubernetes/service", parts.service)
    req.set_meta("kubernetes/namespace", parts.namespace)
    req.set_meta("kubernetes/kind", parts.kind)
