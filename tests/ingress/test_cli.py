"""``portolan ingress`` as an operator runs it: a real process with --manifests, flags,
health and metrics endpoints, a clean stop that takes nginx with it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from ingress.cli import options_from, parser
from ingress.options import resolvers_from
from tests.ingress import objects as o
from tests.ingress.conftest import NGINX, free_ports, until
from tests.ingress.procs import alive

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, *objs: o.Obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump_all([o.for_api(obj) for obj in objs]))
    tmp.replace(path)


async def get(url: str, host: str | None = None) -> tuple[int, str]:
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            headers = {"Host": host} if host else {}
            async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=3)) as resp:
                return resp.status, await resp.text()
    except (aiohttp.ClientError, OSError, TimeoutError):
        return 0, ""


def controller_args(config_dir: Path, manifests: Path, http: int, https: int, health: int) -> list[str]:
    return [
        sys.executable, "-c", "import sys; from portolan.cli import main; sys.exit(main(sys.argv[1:]))",
        "ingress", "--manifests", str(manifests), "--manifest-interval", "0.1",
        "--config-dir", str(config_dir / "run"), "--nginx-binary", NGINX,
        "--bind-address", "127.0.0.1", "--http-port", str(http), "--https-port", str(https),
        "--healthz-address", "127.0.0.1", "--healthz-port", str(health),
        "--publish-status-address", "192.0.2.5", "--sync-debounce", "0.02",
    ]  # fmt: skip


async def stop_process(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> int:
    if proc.returncode is None:
        proc.send_signal(sig)  # our own child, by its PID
    try:
        async with asyncio.timeout(20):
            return await proc.wait()
    except TimeoutError:
        proc.kill()
        return await proc.wait()


async def start_process(config_dir: Path, backends) -> tuple[asyncio.subprocess.Process, Path, int, int]:
    addrs, port = await backends.start("cli-backend")
    manifests = config_dir / "manifests"
    manifests.mkdir()
    write(manifests / "base.yaml", o.ingress_class(), o.service("web", ("http", 80, "http")),
          o.endpoint_slice("web", addrs, port))  # fmt: skip
    write(manifests / "ingress.yaml", o.ingress("web", o.rule("foo.com", o.path("/", "web"))))
    http, https, health = free_ports(3)
    log = (config_dir / "controller.log").open("wb")
    proc = await asyncio.create_subprocess_exec(*controller_args(config_dir, manifests, http, https, health),
                                                cwd=ROOT, stdout=log, stderr=log,
                                                env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    log.close()
    try:
        await until(lambda: _ok(f"http://127.0.0.1:{health}/healthz"), timeout=20)
    except BaseException:
        await stop_process(proc, signal.SIGKILL)
        raise
    return proc, manifests, http, health


async def test_portolan_ingress_process(config_dir: Path, backends) -> None:
    proc, manifests, http, health = await start_process(config_dir, backends)
    try:
        status, body = await get(f"http://127.0.0.1:{http}/x", "foo.com")
        assert status == 200
        assert "cli-backend" in body
        # The manifest directory changes: picked up and served.
        write(manifests / "ingress.yaml", o.ingress("web", o.rule("foo.com", o.path("/", "web"))),
              o.ingress("more", o.rule("bar.com", o.path("/", "web"))))  # fmt: skip
        await until(lambda: _ok(f"http://127.0.0.1:{http}/", "bar.com"), timeout=10)
        # (counted just after nginx answers with the new configuration)
        await until(lambda: _has(f"http://127.0.0.1:{health}/metrics", "portolan_ingress_reloads_total 2.0"))
        nginx_pid = int((config_dir / "run" / "nginx.pid").read_text())
        assert alive(nginx_pid)
    finally:
        code = await stop_process(proc)
    output = (config_dir / "controller.log").read_text()
    assert code == 0, output
    assert not alive(nginx_pid)  # nginx stopped with its controller
    # No API server: the status is logged, not written.
    assert "default/web: loadBalancer.ingress = [{'ip': '192.0.2.5'}] (not written: no API server)" in output


async def test_nginx_dies_with_a_killed_controller(config_dir: Path, backends) -> None:
    proc, _, http, _ = await start_process(config_dir, backends)
    nginx_pid = int((config_dir / "run" / "nginx.pid").read_text())
    try:
        assert alive(nginx_pid)
    finally:
        await stop_process(proc, signal.SIGKILL)  # no chance to stop nginx itself
    # PR_SET_PDEATHSIG: the master gets SIGTERM and takes its workers down.
    await until(lambda: not alive(nginx_pid), timeout=10)
    assert (await get(f"http://127.0.0.1:{http}/", "foo.com"))[0] == 0


async def _has(url: str, text: str) -> bool:
    status, body = await get(url)
    return status == 200 and text in body


async def _ok(url: str, host: str | None = None) -> bool:
    return (await get(url, host))[0] == 200


def test_flags_map_to_options() -> None:
    args = parser().parse_args([
        "--kubeconfig", "/k", "--controller-class", "x.dev/c", "--ingress-class", "edge",
        "--watch-ingress-without-class", "--watch-namespace", "team", "--configmap", "ns/cm",
        "--publish-service", "ns/svc", "--http-port", "8080", "--https-port", "8443",
        "--default-ssl-certificate", "ns/cert", "--nginx-binary", "/opt/nginx", "--config-dir", "/c",
        "--healthz-port", "9000", "--metrics-port", "9100", "--bind-address", "127.0.0.1",
        "--bind-address", "::1", "--lease-duration", "20", "--renew-deadline", "12", "--retry-period", "3",
        "--tcp-services-configmap", "ingress/tcp", "--udp-services-configmap", "ingress/udp", "--stream-module", "",
    ])  # fmt: skip
    opts = options_from(args)
    assert opts.kubeconfig == "/k"
    assert opts.manifests is None
    assert (opts.classes.controller_class, opts.classes.ingress_class, opts.classes.watch_without_class) == (
        "x.dev/c", "edge", True)  # fmt: skip
    assert opts.watch_namespace == "team"
    assert opts.configmap == ("ns", "cm")
    assert opts.publish_service == ("ns", "svc")
    assert opts.publish_status_address == ()
    assert (opts.http_port, opts.https_port, opts.healthz_port, opts.metrics_port) == (8080, 8443, 9000, 9100)
    assert opts.default_ssl_certificate == ("ns", "cert")
    assert opts.nginx_binary == "/opt/nginx"
    assert opts.bind_addresses == ("127.0.0.1", "::1")
    assert (opts.lease.duration, opts.lease.renew_deadline, opts.lease.retry) == (20, 12, 3)
    assert (opts.tcp_services_configmap, opts.udp_services_configmap) == (("ingress", "tcp"), ("ingress", "udp"))
    assert opts.stream_module == ""


def test_gateway_flags() -> None:
    opts = options_from(parser().parse_args(["--listener-port-map", "80=8080,443=8443", "--gateway-controller-name",
                                             "example.com/gw"]))  # fmt: skip
    assert (opts.listener_port_map, opts.gateway_controller_name) == ({80: 8080, 443: 8443}, "example.com/gw")
    assert options_from(parser().parse_args(["--gateway-controller-name", ""])).gateway_controller_name == ""
    assert options_from(parser().parse_args([])).gateway_controller_name == "portolan.dev/gateway-controller"


def test_defaults() -> None:
    opts = options_from(parser().parse_args([]))
    assert opts.classes.controller_class == "portolan.dev/ingress-controller"
    assert opts.classes.ingress_class == "portolan"
    assert not opts.classes.watch_without_class
    assert (opts.http_port, opts.https_port, opts.nginx_binary) == (80, 443, "nginx")
    assert (opts.lease.duration, opts.lease.renew_deadline, opts.lease.retry) == (15, 10, 2)
    assert opts.debounce == 0.1
    assert opts.tcp_services_configmap is None
    assert opts.udp_services_configmap is None
    assert opts.stream_module == "/usr/lib/nginx/modules/ngx_stream_module.so"


@pytest.mark.parametrize(
    "argv",
    [
        ["--configmap", "no-slash"],
        ["--tcp-services-configmap", "tcp"],
        ["--udp-services-configmap", "a/B_C"],
        ["--publish-service", "a/b", "--publish-status-address", "1.2.3.4"],
        ["--manifests", "m", "--kubeconfig", "k"],
        ["--http-port", "70000"],
        ["--bind-address", "localhost"],
        ["--lease-duration", "5", "--renew-deadline", "10"],
        ["--http-port", "8080", "--https-port", "8080"],
        ["--listener-port-map", "80"],
        ["--listener-port-map", "80=0"],
        ["--listener-port-map", "80=x"],
    ],
)
def test_bad_flags(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        options_from(parser().parse_args(argv))
    assert exc.value.code != 0


# resolv.conf text -> the resolvers nginx is given (IPs only; zones and junk left out)
RESOLV_CONF = [
    (b"nameserver 10.96.0.10\nsearch svc.cluster.local\n", ("10.96.0.10",)),
    (b"# nameserver 10.0.0.9\nnameserver fe80::1%eth0\nnameserver dns.example\n", ("fe80::1",)),
    (b"options ndots:5 \xff\xfe\nnameserver 10.0.0.2\n", ("10.0.0.2",)),  # not UTF-8: read all the same
    (b"", ()),
]


@pytest.mark.parametrize(("text", "want"), RESOLV_CONF, ids=repr)
def test_resolvers_from_resolv_conf(tmp_path: Path, text: bytes, want: tuple[str, ...]) -> None:
    path = tmp_path / "resolv.conf"
    path.write_bytes(text)
    assert resolvers_from(str(path)) == want
    assert resolvers_from(str(tmp_path / "missing")) == ()
