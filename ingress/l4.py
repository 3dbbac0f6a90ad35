"""L4 services: ``--tcp-services-configmap`` / ``--udp-services-configmap`` -> nginx ``stream``.

Each ConfigMap entry is ``"PORT": "NAMESPACE/SERVICE:SERVICE_PORT[:PROXY[:PROXY]]"`` as in
ingress-nginx: listen on PORT, proxy to the ready endpoints behind the Service port (number
or name). The third field ``PROXY`` accepts the PROXY protocol on the listener, the fourth
sends it to the endpoints; both are TCP only (nginx's stream listener cannot take PROXY over
UDP), so they are refused for UDP with a message.

An entry that does not parse, names a port the controller uses itself, or a Service or port
that does not exist, is skipped with a note (log line); so is a Service without ready
endpoints keeps its listener, whose connections are closed until one is ready, as in
ingress-nginx. Every value is parsed into the typed StreamService below; only those fields reach
the template. Endpoints never do: they are live data (a file per service, read per connection
by templates/njs/portolan_l4.js), so an endpoint change needs no reload.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ingress import validate
from ingress.endpoints import ServiceLookup, ready_endpoints
from ingress.validate import InvalidValue
from kubewatch import Service, ServicePort

TCP, UDP = "TCP", "UDP"
PROXY = "PROXY"
# Ports ingress-nginx refuses for L4 (its own listeners and status ports); the controller
# adds the ports it is configured with.
RESERVED = frozenset({80, 442, 443, 8181, 10245, 10246, 10247, 10254})


@dataclass(frozen=True, slots=True)
class StreamService:
    """One parsed TCP/UDP ConfigMap entry: the port nginx listens on, the Service port behind it, PROXY flags."""

    protocol: str  # TCP | UDP
    port: int  # where nginx listens
    namespace: str
    service: str
    service_port: int | str  # number or name
    accept_proxy: bool = False
    send_proxy: bool = False


@dataclass(frozen=True, slots=True)
class StreamServer:
    """A stream listener as rendered: its service and the ready endpoints its live peer file holds."""

    service: StreamService
    endpoints: tuple[tuple[str, int], ...]  # ready (ip, port), sorted

    @property
    def key(self) -> str:
        """Names the file of its live peers."""
        return f"{self.service.protocol.lower()}-{self.service.port}"

    @property
    def label(self) -> str:
        s = self.service
        return f"{s.protocol} {s.port} -> {s.namespace}/{s.service}:{s.service_port}"


def parse_entry(protocol: str, key: str, value: str, reserved: frozenset[int]) -> StreamService:
    where = f"{protocol.lower()} services entry {key!r}"
    if not key.isascii() or not key.isdigit() or not 0 < int(key) < 65536:
        raise InvalidValue(f"{where}: the key must be a port number")
    port = int(key)
    if port in reserved:
        raise InvalidValue(f"{where}: port {port} is reserved")
    if not isinstance(value, str):
        raise InvalidValue(f"{where}: the value must be NAMESPACE/SERVICE:PORT")
    ref, *fields = value.strip().split(":")
    if not 1 <= len(fields) <= 3:
        raise InvalidValue(f"{where}: {value!r} is not NAMESPACE/SERVICE:PORT[:PROXY[:PROXY]]")
    ns, svc = validate.ns_name(ref, where)
    validate.service_name(svc, where)
    raw_port, *flags = fields
    service_port: int | str
    if raw_port.isascii() and raw_port.isdigit():
        service_port = validate.port_number(int(raw_port), where)
    else:
        service_port = validate.port_name(raw_port, where)
    if any(f not in ("", PROXY) for f in flags):
        raise InvalidValue(f"{where}: {value!r}: only PROXY (or nothing) may follow the port")
    accept, send = [*flags, "", ""][:2]
    if protocol == UDP and (accept or send):
        raise InvalidValue(f"{where}: the PROXY protocol is not supported for UDP")
    return StreamService(protocol, port, ns, svc, service_port, accept == PROXY, send == PROXY)


def parse_services(
    protocol: str, data: Mapping[str, str] | None, reserved: frozenset[int]
) -> tuple[list[StreamService], list[str]]:
    found, problems = [], []
    for key in sorted(data or {}, key=lambda k: (len(k), k)):
        try:
            found.append(parse_entry(protocol, key, (data or {})[key], reserved))
        except InvalidValue as exc:
            problems.append(f"{exc}; skipped")
    return found, problems


def _service_port(svc: Service, protocol: str, ref: int | str) -> ServicePort | None:
    for sp in svc.ports:
        if (sp.protocol or TCP) != protocol:
            continue
        if (isinstance(ref, int) and sp.port == ref) or (isinstance(ref, str) and sp.name == ref):
            return sp
    return None


def build_streams(
    lookup: ServiceLookup,
    tcp: Mapping[str, str] | None,
    udp: Mapping[str, str] | None,
    reserved: Iterable[int] = (),
) -> tuple[tuple[StreamServer, ...], list[str]]:
    """Stream servers for the TCP and UDP ConfigMaps' data, and notes for what was skipped."""
    taken = RESERVED | frozenset(reserved)
    notes: list[str] = []
    servers: list[StreamServer] = []
    for protocol, data in ((TCP, tcp), (UDP, udp)):
        entries, problems = parse_services(protocol, data, taken)
        notes.extend(problems)
        for entry in entries:
            label = f"{protocol.lower()} services entry {str(entry.port)!r}"
            svc = lookup.service(entry.namespace, entry.service)
            if svc is None:
                notes.append(f"{label}: service {entry.namespace}/{entry.service} not found; skipped")
                continue
            sp = _service_port(svc, protocol, entry.service_port)
            if sp is None:
                notes.append(f"{label}: service {entry.namespace}/{entry.service} has no {protocol} port "
                             f"{entry.service_port}; skipped")  # fmt: skip
                continue
            endpoints = ready_endpoints(lookup, svc, sp, notes)
            if not endpoints:
                notes.append(f"{label}: service {entry.namespace}/{entry.service} has no ready endpoints; "
                             "connections are closed until one is")  # fmt: skip
            servers.append(StreamServer(entry, endpoints))
    return tuple(servers), notes
