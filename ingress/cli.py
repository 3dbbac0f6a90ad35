"""``portolan ingress``: flags in ingress-nginx's spirit, then run the controller until
SIGTERM/SIGINT (nginx stops with it)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from ingress import validate
from ingress.classes import ClassPolicy
from ingress.controller import Controller, ControllerError
from ingress.lease import LeaseTiming
from ingress.options import NsName, Options, default_identity
from ingress.validate import InvalidValue, ns_name

log = logging.getLogger("ingress")

# The flags' defaults are the options' own: one place to change them.
_CLASSES, _LEASE = ClassPolicy(), LeaseTiming()


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port")
    return value


def _ip(text: str) -> str:
    try:
        return validate.ip(text, "address")
    except validate.InvalidValue:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def _listen(text: str) -> tuple[str, int]:
    """ADDR:PORT, [IPv6]:PORT, or :PORT (all addresses, ingress-nginx's ":8443")."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not ADDR:PORT")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return (_ip(host) if host else "0.0.0.0", _port(port))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ADDR:PORT") from None


def _port_map(text: str) -> dict[int, int]:
    """N=M[,N=M...]: a Gateway listener on port N is served by nginx on port M."""
    out: dict[int, int] = {}
    for item in text.split(","):
        left, sep, right = item.strip().partition("=")
        try:
            n, m = _port(left), _port(right)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not N=M") from None
        if not sep or not n or not m:
            raise argparse.ArgumentTypeError(f"{item!r} is not N=M")
        out[n] = m
    return out


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="portolan ingress",
        description="Ingress controller: renders Ingresses into an nginx it starts and supervises.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster service account)")
    src.add_argument("--manifests", metavar="PATH", help="read objects from YAML files instead of an API server")
    p.add_argument("--manifest-interval", type=_positive, default=Options.manifest_interval,
                   help="seconds between manifest re-reads")  # fmt: skip
    p.add_argument(
        "--controller-class",
        default=_CLASSES.controller_class,
        help="spec.controller of the IngressClasses that are ours",
    )
    p.add_argument(
        "--ingress-class",
        default=_CLASSES.ingress_class,
        help="value of the legacy kubernetes.io/ingress.class annotation that is ours",
    )
    p.add_argument(
        "--watch-ingress-without-class",
        nargs="?",
        const=True,
        default=_CLASSES.watch_without_class,
        type=_bool,
        help="also serve Ingresses that name no class",
    )
    p.add_argument("--watch-namespace", default="", help="only this namespace (default: all)")
    p.add_argument("--configmap", metavar="NS/NAME", help="ConfigMap with nginx settings")
    p.add_argument(
        "--tcp-services-configmap",
        metavar="NS/NAME",
        help='ConfigMap of TCP services: "PORT": "NS/SVC:PORT[:PROXY[:PROXY]]"',
    )
    p.add_argument(
        "--udp-services-configmap", metavar="NS/NAME", help='ConfigMap of UDP services: "PORT": "NS/SVC:PORT"'
    )
    p.add_argument("--stream-module", default=Options.stream_module,
                   help='nginx stream module to load for TCP/UDP services ("" if built in)')  # fmt: skip
    p.add_argument("--stream-js-module", default=Options.stream_js_module,
                   help='nginx njs stream module that picks TCP/UDP peers live ("" if built in)')  # fmt: skip
    p.add_argument("--lua-modules", default=",".join(Options.lua_modules), metavar="PATH[,PATH]",
                   help="nginx modules of the live data plane, loaded in order (Debian's NDK and "
                        'lua-nginx-module; "" if built in)')  # fmt: skip
    pub = p.add_mutually_exclusive_group()
    pub.add_argument(
        "--publish-service", metavar="NS/NAME", help="Service whose address is written to the status of our Ingresses"
    )
    pub.add_argument(
        "--publish-status-address", metavar="ADDR[,ADDR]", help="addresses written to the status of our Ingresses"
    )
    p.add_argument("--status-update-interval", type=_positive, default=Options.status_update_interval)
    p.add_argument(
        "--bind-address",
        action="append",
        type=_ip,
        metavar="IP",
        help="address nginx listens on (repeatable; default 0.0.0.0)",
    )
    p.add_argument("--http-port", type=_port, default=Options.http_port)
    p.add_argument("--gateway-controller-name", default=Options.gateway_controller_name,
                   help="GatewayClass controllerName served (empty: Gateway API off)")  # fmt: skip
    p.add_argument("--listener-port-map", type=_port_map, default={}, metavar="N=M[,N=M]",
                   help="serve Gateway listeners on port N on nginx's port M")  # fmt: skip
    p.add_argument("--https-port", type=_port, default=Options.https_port)
    p.add_argument(
        "--default-ssl-certificate",
        metavar="NS/NAME",
        help="TLS Secret served when no Ingress certificate fits (default: self-signed)",
    )
    p.add_argument("--nginx-binary", default=Options.nginx_binary)
    p.add_argument(
        "--config-dir",
        default=Options.config_dir,
        help="nginx.conf, certificates, pid file, logs and temp files",
    )
    p.add_argument("--templates-dir", default=None, help="nginx.conf.j2 and its parts (default: the shipped ones)")
    p.add_argument("--healthz-address", type=_ip, default=Options.healthz_address)
    p.add_argument("--healthz-port", type=int, default=Options.healthz_port,
                   help="/healthz (and /metrics); -1 disables")  # fmt: skip
    p.add_argument("--metrics-port", type=_port, default=None, help="/metrics on its own port")
    p.add_argument("--enable-metrics", nargs="?", const=True, default=True, type=_bool,
                   help="count requests in nginx for nginx_ingress_controller_* (default true)")  # fmt: skip
    p.add_argument("--metrics-per-host", nargs="?", const=True, default=True, type=_bool,
                   help="a host label on the request metrics (default true)")  # fmt: skip
    p.add_argument("--election-id", default=Options.election_id, help="name of the Lease")
    p.add_argument("--election-namespace", default=None, help="namespace of the Lease (default $POD_NAMESPACE)")
    p.add_argument("--election-identity", default=None, help="this replica's name in the Lease")
    p.add_argument("--lease-duration", type=_positive, default=_LEASE.duration)
    p.add_argument("--renew-deadline", type=_positive, default=_LEASE.renew_deadline)
    p.add_argument("--retry-period", type=_positive, default=_LEASE.retry)
    p.add_argument("--sync-debounce", type=float, default=Options.debounce, help="quiet seconds before a rebuild")
    p.add_argument("--sync-max-delay", type=_positive, default=Options.max_delay,
                   help="longest wait for a quiet period")  # fmt: skip
    p.add_argument(
        "--shutdown-grace-period",
        type=float,
        default=Options.shutdown_grace,
        help="on stop, seconds nginx may finish requests before it is stopped hard",
    )
    p.add_argument("--validating-webhook", type=_listen, metavar="ADDR:PORT",
                   help="serve the validating admission webhook (HTTPS, /networking/v1/ingresses) here")  # fmt: skip
    p.add_argument("--validating-webhook-certificate", metavar="FILE", default="",
                   help="the webhook's certificate (PEM)")  # fmt: skip
    p.add_argument("--validating-webhook-key", metavar="FILE", default="", help="the webhook's private key (PEM)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def _ref(value: str | None, flag: str) -> NsName | None:
    """A NAMESPACE/NAME flag's value, None when unset."""
    return ns_name(value, flag) if value else None


def options_from(args: argparse.Namespace) -> Options:
    try:
        configmap = _ref(args.configmap, "--configmap")
        tcp = _ref(args.tcp_services_configmap, "--tcp-services-configmap")
        udp = _ref(args.udp_services_configmap, "--udp-services-configmap")
        publish = _ref(args.publish_service, "--publish-service")
        default_cert = _ref(args.default_ssl_certificate, "--default-ssl-certificate")
    except InvalidValue as exc:
        raise SystemExit(f"portolan ingress: {exc}") from None
    if args.http_port == args.https_port:
        raise SystemExit("portolan ingress: --http-port and --https-port must differ")
    if args.validating_webhook and not (args.validating_webhook_certificate and args.validating_webhook_key):
        raise SystemExit("portolan ingress: --validating-webhook needs --validating-webhook-certificate and "
                         "--validating-webhook-key (the API server calls webhooks over HTTPS only)")  # fmt: skip
    if args.renew_deadline >= args.lease_duration:
        raise SystemExit("portolan ingress: --renew-deadline must be shorter than --lease-duration")
    options = Options(
        kubeconfig=args.kubeconfig,
        manifests=args.manifests,
        manifest_interval=args.manifest_interval,
        classes=ClassPolicy(args.controller_class, args.ingress_class, args.watch_ingress_without_class),
        watch_namespace=args.watch_namespace,
        configmap=configmap,
        tcp_services_configmap=tcp,
        udp_services_configmap=udp,
        stream_module=args.stream_module,
        stream_js_module=args.stream_js_module,
        lua_modules=tuple(m for m in args.lua_modules.split(",") if m.strip()),
        publish_service=publish,
        publish_status_address=tuple(a for a in (args.publish_status_address or "").split(",") if a.strip()),
        status_update_interval=args.status_update_interval,
        bind_addresses=tuple(args.bind_address or Options.bind_addresses),
        http_port=args.http_port,
        https_port=args.https_port,
        default_ssl_certificate=default_cert,
        nginx_binary=args.nginx_binary,
        config_dir=args.config_dir,
        templates_dir=args.templates_dir,
        healthz_address=args.healthz_address,
        healthz_port=args.healthz_port,
        metrics_port=args.metrics_port,
        enable_metrics=args.enable_metrics,
        metrics_per_host=args.metrics_per_host,
        election_id=args.election_id,
        identity=args.election_identity or default_identity(),
        lease=LeaseTiming(args.lease_duration, args.renew_deadline, args.retry_period),
        debounce=args.sync_debounce,
        max_delay=args.sync_max_delay,
        shutdown_grace=args.shutdown_grace_period,
        validating_webhook=args.validating_webhook,
        validating_webhook_certificate=args.validating_webhook_certificate,
        validating_webhook_key=args.validating_webhook_key,
        gateway_controller_name=args.gateway_controller_name,
        listener_port_map=args.listener_port_map,
    )
    if args.election_namespace:
        options.election_namespace = args.election_namespace
    return options


async def run(options: Options) -> int:
    controller = Controller(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await controller.start()
    except ControllerError as exc:
        log.error("cannot start: %s", exc)
        await controller.stop()
        return 1
    log.info("ingress controller running (http %d, https %d)", options.http_port, options.https_port)
    await stop.wait()
    log.info("stopping")
    await controller.stop()
    return 0


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    options = options_from(args)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(run(options))
    return uvloop.run(run(options))
