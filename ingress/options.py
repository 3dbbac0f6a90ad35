"""Everything the controller is told at start-up (the CLI flags, as typed values)."""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ingress.classes import ClassPolicy
from ingress.lease import LeaseTiming
from ingress.render import LUA_MODULES

NsName = tuple[str, str]


def default_identity() -> str:
    # Pod name (the hostname in a pod) plus a random suffix: a restarted container must not
    # inherit its predecessor's lease as if it had been renewing it all along.
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def resolvers_from(path: str = "/etc/resolv.conf") -> tuple[str, ...]:
    """nameserver lines of resolv.conf (IPs only), for ExternalName Services named by DNS."""
    found: list[str] = []
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")  # a stray byte must not stop start-up
    except OSError:
        return ()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                found.append(str(ipaddress.ip_address(parts[1].split("%")[0])))
            except ValueError:
                continue
    return tuple(found)


@dataclass
class Options:
    """The controller's start-up configuration: the CLI flags as typed values."""

    # Where objects come from: --manifests, else --kubeconfig, else in-cluster.
    kubeconfig: str | None = None
    manifests: str | None = None
    manifest_interval: float = 2.0
    classes: ClassPolicy = field(default_factory=ClassPolicy)
    watch_namespace: str = ""
    configmap: NsName | None = None
    tcp_services_configmap: NsName | None = None
    udp_services_configmap: NsName | None = None
    # nginx's stream module, loaded only when there are TCP/UDP services ("": built in).
    stream_module: str = "/usr/lib/nginx/modules/ngx_stream_module.so"
    # njs for the stream module (libnginx-mod-stream-js): it picks TCP/UDP peers live ("": built in).
    stream_js_module: str = "/usr/lib/nginx/modules/ngx_stream_js_module.so"
    # nginx's Lua module and the NDK it needs (Debian's libnginx-mod-http-lua); () if built in.
    lua_modules: tuple[str, ...] = LUA_MODULES
    publish_service: NsName | None = None
    publish_status_address: tuple[str, ...] = ()
    status_update_interval: float = 60.0
    bind_addresses: tuple[str, ...] = ("0.0.0.0",)
    http_port: int = 80
    https_port: int = 443
    default_ssl_certificate: NsName | None = None
    nginx_binary: str = "nginx"
    config_dir: str = "/var/lib/portolan-ingress"
    templates_dir: str | None = None  # None: the templates shipped with Portolan
    healthz_address: str = "0.0.0.0"
    healthz_port: int = 10254  # 0: any free port; -1: no health/metrics server
    metrics_port: int | None = None  # None: served with /healthz
    enable_metrics: bool = True  # request metrics counted in nginx (log_by_lua), as ingress-nginx's --enable-metrics
    metrics_per_host: bool = True  # a host label on them (ingress-nginx's --metrics-per-host)
    election_id: str = "portolan-ingress-leader"
    election_namespace: str = field(default_factory=lambda: os.environ.get("POD_NAMESPACE", "default"))
    identity: str = field(default_factory=default_identity)
    lease: LeaseTiming = field(default_factory=LeaseTiming)
    debounce: float = 0.1
    max_delay: float = 1.0
    resolvers: tuple[str, ...] | None = None  # None: read /etc/resolv.conf
    sync_timeout: float = 60.0  # for the first full list of every kind
    reload_timeout: float = 10.0  # for a reload (or start) to serve the new config hash
    shutdown_grace: float = 0.0  # SIGQUIT and wait this long before stopping nginx hard
    # --validating-webhook: (address, port) of the admission webhook (None: not served), and
    # its TLS pair (files; the API server only speaks HTTPS to webhooks).
    validating_webhook: tuple[str, int] | None = None
    validating_webhook_certificate: str = ""
    validating_webhook_key: str = ""
    # Gateway API: the GatewayClass controllerName we own ("": Gateway API off), and
    # --listener-port-map (a listener's port -> the port nginx listens on for it).
    gateway_controller_name: str = "portolan.dev/gateway-controller"
    listener_port_map: dict[int, int] = field(default_factory=dict)
