"""The global ConfigMap keys through real nginx: ingress-nginx's defaults, then each key set."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from ingress.controller import Controller
from kubewatch import Store
from tests.ingress import objects as o
from tests.ingress.conftest import nginx_workers, services, until
from tests.ingress.procs import children
from tests.ingress.tlsutil import Authority


async def _setup(backends, authority: Authority, data: dict[str, str] | None) -> Store:
    store = Store()
    await services(backends, store, web=("w1",))
    crt, key = authority.issue("foo.com")
    o.put(
        store,
        o.tls_secret("cert", crt, key),
        o.ingress("i", o.rule("foo.com", o.path("/", "web")), tls=[{"hosts": ["foo.com"], "secretName": "cert"}]),
    )
    if data is not None:
        o.put(store, o.config_map("cfg", data))
    return store


async def _post(port: int, size: int) -> int:
    url = f"https://127.0.0.1:{port}/"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=b"x" * size, headers={"Host": "foo.com"}, ssl=False, server_hostname="foo.com") as resp,
    ):
        return resp.status


async def _tls_version(port: int, version: ssl.TLSVersion) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="foo.com")
    except (ssl.SSLError, ConnectionError):
        return False
    writer.close()
    return True


async def test_defaults_follow_ingress_nginx(start_controller, backends, client_for, authority) -> None:
    store = await _setup(backends, authority, None)
    controller = await start_controller(store)
    client = client_for(controller)
    https = controller.options.https_port
    reply = await client.request("foo.com", "/", https=True, verify=False,
                                 headers={"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "gopher",
                                          "X-Forwarded-Host": "evil.com", "X-Forwarded-Port": "1"})  # fmt: skip
    assert reply.backend == "w1"
    assert reply.headers["Server"] == "nginx"  # server-tokens false: no version
    assert reply.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    h = reply.data["headers"]
    # use-forwarded-headers false: the client's X-Forwarded-* are replaced
    assert (h["X-Forwarded-For"], h["X-Forwarded-Proto"], h["X-Forwarded-Host"], h["X-Forwarded-Port"]) == (
        "127.0.0.1",
        "https",
        "foo.com",
        str(https),
    )
    assert await _post(https, 1024 * 1024 - 1024) == 200  # under 1m
    assert await _post(https, 2 * 1024 * 1024) == 413  # over 1m
    assert await _tls_version(https, ssl.TLSVersion.TLSv1_2)
    assert await _tls_version(https, ssl.TLSVersion.TLSv1_3)
    conf = controller.layout.conf.read_text()
    for line in ("keepalive_timeout 75s;", "keepalive_requests 1000;", "keepalive 320;", "proxy_connect_timeout 5s;",
                 "proxy_read_timeout 60s;", "proxy_send_timeout 60s;", "server_tokens off;"):  # fmt: skip
        assert line in conf


async def test_configmap_keys(start_controller, backends, client_for, authority) -> None:
    data = {
        "server-tokens": "true", "proxy-body-size": "3m", "ssl-protocols": "TLSv1.3", "hsts-max-age": "100",
        "hsts-include-subdomains": "false", "use-forwarded-headers": "true", "keep-alive": "10",
        "keep-alive-requests": "7", "upstream-keepalive-connections": "16", "proxy-read-timeout": "90",
        "log-format-upstream": "custom $host [$status] $request_method $uri",
        "proxy-send-timeout": "30; ssl_engine x",  # refused: the default stays, the rest applies
    }  # fmt: skip
    store = await _setup(backends, authority, data)
    controller = await start_controller(store, configmap=("default", "cfg"))
    client = client_for(controller)
    https = controller.options.https_port
    reply = await client.request("foo.com", "/logged", https=True, verify=False,
                                 headers={"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "http"})  # fmt: skip
    assert reply.backend == "w1"
    assert reply.headers["Server"].startswith("nginx/")
    assert reply.headers["Strict-Transport-Security"] == "max-age=100"
    h = reply.data["headers"]
    # use-forwarded-headers true: a proxy in front is trusted, the client address comes from it
    assert (h["X-Forwarded-For"], h["X-Forwarded-Proto"], h["X-Real-IP"]) == (
        "198.51.100.7, 127.0.0.1",
        "http",
        "198.51.100.7",
    )
    assert h["X-Forwarded-Host"] == "foo.com"
    assert await _post(https, 2 * 1024 * 1024) == 200
    assert not await _tls_version(https, ssl.TLSVersion.TLSv1_2)
    assert await _tls_version(https, ssl.TLSVersion.TLSv1_3)
    conf = controller.layout.conf.read_text()
    for line in ("keepalive_timeout 10s;", "keepalive_requests 7;", "keepalive 16;", "proxy_read_timeout 90s;",
                 "proxy_send_timeout 60s;", "ssl_protocols TLSv1.3;"):  # fmt: skip
        assert line in conf
    assert "ssl_engine" not in conf

    async def logged() -> bool:
        return "custom foo.com [200] GET /logged" in controller.layout.access_log.read_text()

    await until(logged)


SHORT = 2  # seconds: worker-shutdown-timeout of the controller whose old workers must go


@dataclass
class _Held:
    """A controller with a WebSocket held open through its nginx."""

    store: Store
    controller: Controller
    ws: aiohttp.ClientWebSocketResponse
    old: set[int]  # nginx's workers before the reload
    reloaded: float = 0.0  # when the new configuration first answered

    def old_left(self) -> set[int]:
        """The old workers still running (asked of the master: a PID may be reused)."""
        assert self.controller.nginx.pid is not None
        return self.old & children(self.controller.nginx.pid)


async def test_worker_shutdown_timeout_bounds_old_workers(start_controller, backends, client_for) -> None:
    # An old worker stays after a reload for as long as a connection it serves is open, up to
    # worker_shutdown_timeout; then it closes the connection and exits. Two controllers, 2s and
    # 60s, each with a WebSocket open across a reload.
    async with aiohttp.ClientSession() as session:
        short = await _hold(start_controller, backends, session, f"{SHORT}s")
        long = await _hold(start_controller, backends, session, "60s")
        for held in (short, long):  # a new Ingress: a reload
            o.put(held.store, o.ingress("new", o.rule("new.com", o.path("/", "web"))))
        for held in (short, long):
            client = client_for(held.controller)
            await until(lambda c=client: c.answers("new.com", "/"))
            held.reloaded = time.monotonic()
            await _echoes(held.ws, "after the reload")  # still served, by an old worker
            assert held.old_left()
        await until(lambda: not short.old_left(), timeout=SHORT + 5)
        assert time.monotonic() - short.reloaded < SHORT + 3
        closed = await asyncio.wait_for(short.ws.receive(), 5)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        # With 60s, at that moment the old worker is there still, and serving.
        assert long.old_left()
        await _echoes(long.ws, "still")


async def _hold(start_controller, backends, session: aiohttp.ClientSession, timeout: str) -> _Held:
    store = Store()
    await services(backends, store, web=(f"w{timeout}",))
    o.put(store, o.ingress("chat", o.rule("chat.com", o.path("/", "web"))),
          o.config_map("cfg", {"worker-shutdown-timeout": timeout}))  # fmt: skip
    controller = await start_controller(store, configmap=("default", "cfg"))
    assert f"worker_shutdown_timeout {timeout};" in controller.layout.conf.read_text()
    url = f"http://127.0.0.1:{controller.options.http_port}/chat"
    ws = await session.ws_connect(url, headers={"Host": "chat.com"})
    await _echoes(ws, "before")
    return _Held(store, controller, ws, nginx_workers(controller))


async def _echoes(ws: aiohttp.ClientWebSocketResponse, text: str) -> None:
    await ws.send_str(text)
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    assert msg.data.endswith(f":{text}"), msg


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def test_access_log_path_params_and_error_log_level(start_controller, backends, client_for, authority) -> None:
    logs = Path(tempfile.mkdtemp(prefix="plog-"))
    custom = logs / "custom-access.log"
    data = {"access-log-path": str(custom), "access-log-params": "buffer=4k, flush=1s", "error-log-level": "info"}
    controller = await start_controller(await _setup(backends, authority, data), configmap=("default", "cfg"))
    conf = controller.layout.conf.read_text()
    assert f'access_log "{custom}" portolan buffer=4k flush=1s;' in conf
    assert f'error_log "{controller.layout.error_log}" info;' in conf
    client = client_for(controller)
    assert (await client.request("nobody.test", "/unrouted")).status == 404  # the built-in default backend
    assert (await client.request("foo.com", "/routed", https=True, verify=False)).backend == "w1"
    await until(lambda: "/routed" in _text(custom), timeout=10)  # written within flush=1s
    # enable-access-log-for-default-backend is off (ingress-nginx's default): its 404 is not
    # logged, though it came first and sat in the same buffer.
    assert "/unrouted" not in _text(custom)
    assert "/routed" not in _text(controller.layout.access_log)
    # error-log-level info: nginx logs a malformed request line at info
    reader, writer = await asyncio.open_connection("127.0.0.1", controller.options.http_port)
    writer.write(b"G@T / HTTP/1.1\r\nHost: foo.com\r\n\r\n")
    assert (await reader.readline()).startswith(b"HTTP/1.1 400")
    writer.close()
    await until(lambda: "client sent invalid method" in _text(controller.layout.error_log))
    shutil.rmtree(logs, ignore_errors=True)


async def test_access_log_for_default_backend_and_disabled(start_controller, backends, client_for, authority) -> None:
    data = {"enable-access-log-for-default-backend": "true"}
    store = await _setup(backends, authority, data)
    off = o.ann(enable_access_log="false")
    unlogged = o.ingress("unlogged", o.rule("unlogged.com", o.path("/", "web")), annotations=off)
    o.put(store, unlogged)
    logged = await start_controller(store, configmap=("default", "cfg"))
    data = {"disable-access-log": "true", "enable-access-log-for-default-backend": "true"}
    quiet = await start_controller(await _setup(backends, authority, data), configmap=("default", "cfg"))
    assert logged.layout.conf.read_text().count("access_log off;") == 2  # the status socket's server, unlogged.com
    assert "\n    access_log off;\n" in quiet.layout.conf.read_text()  # http-wide
    for controller in (logged, quiet):
        client = client_for(controller)
        assert (await client.request("nobody.test", "/unrouted")).status == 404
        assert (await client.request("foo.com", "/routed", https=True, verify=False)).backend == "w1"
    # the annotation enable-access-log: "false" leaves its Ingress's requests out
    assert (await client_for(logged).request("unlogged.com", "/not-logged")).backend == "w1"
    await until(lambda: "/unrouted" in _text(logged.layout.access_log) and "/routed" in _text(logged.layout.access_log))
    await asyncio.sleep(0.3)  # (unbuffered: a line would be there by now)
    assert "/routed" not in _text(quiet.layout.access_log)
    assert "/unrouted" not in _text(quiet.layout.access_log)
    assert "/not-logged" not in _text(logged.layout.access_log)
