"""Fixtures for the ingress tests: a short config dir, backends, a controller (in-process)
fed directly through its Store, and an HTTP client aimed at the controller's nginx."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from ingress import settings as settings_module
from ingress.controller import Controller
from ingress.options import Options
from kubewatch import Store
from tests.ingress import objects as o
from tests.ingress.backends import Backends
from tests.ingress.procs import children
from tests.ingress.tlsutil import Authority

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


# Every port free_ports has returned in this session.
_handed_out: set[int] = set()


def free_ports(count: int, address: str = "127.0.0.1") -> list[int]:
    """Distinct ports free for TCP and UDP alike, none of them ever returned before.

    All sockets are held open until every port is chosen, or the kernel may hand the same port
    out twice. That holds within one call only: a port is released on return (nginx binds it
    later), so the kernel may give it to the next call, e.g. make_options' for the controller's
    own listeners after a test took its L4 ports; the controller then refuses the test's entry
    as a reserved port, or nginx fails to bind. Hence no port is returned twice in a session.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            if len(held) > 2000:
                raise RuntimeError(f"no {count} free ports on {address}")
            tcp = socket.socket()
            held.append(tcp)  # held even if refused below: the kernel must not offer it again
            tcp.bind((address, 0))
            port = tcp.getsockname()[1]
            if port in _handed_out:
                continue
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(udp)
            try:
                udp.bind((address, port))  # e.g. a UDP service port must be free for UDP too
            except OSError:
                continue
            ports.append(port)
            _handed_out.add(port)
        return ports
    finally:
        for s in held:
            s.close()


@pytest.fixture
def config_dir() -> Iterator[Path]:
    # Short (the status socket path must fit sun_path) and under /tmp, whose parents nginx
    # workers (user nobody when we are root) can traverse; pytest's tmp_path is 0700.
    d = Path(tempfile.mkdtemp(prefix="ping-"))
    os.chmod(d, 0o711)
    yield d
    if not os.environ.get("PORTOLAN_KEEP_TEST_DIRS"):  # set it to read nginx's logs after a failure
        shutil.rmtree(d, ignore_errors=True)


class StoreSource:
    """A source that only declares every kind synced: the test fills the Store itself."""

    def __init__(self, store: Store, kinds: tuple[str, ...]) -> None:
        self.store = store
        self.kinds = frozenset(kinds)

    def staleness(self, kind: str) -> float:
        return 0.0

    async def start(self) -> None:
        self.store.add_source(self)
        for kind in self.kinds:
            self.store.mark_synced(kind)

    async def stop(self) -> None:
        self.store.remove_source(self)


WATCHED = ("ingresses", "ingressclasses", "services", "endpointslices", "secrets", "configmaps")


def make_options(config_dir: Path, **overrides: Any) -> Options:
    # The health port too comes from free_ports: a port the kernel picked for it (port 0) could be
    # one a test has chosen for nginx and not yet bound.
    http_port, https_port, healthz_port = free_ports(3)
    base = Options(
        nginx_binary=NGINX,
        config_dir=str(config_dir),
        bind_addresses=("127.0.0.1",),
        http_port=http_port,
        https_port=https_port,
        healthz_address="127.0.0.1",
        healthz_port=healthz_port,
        debounce=0.02,
        max_delay=0.2,
        resolvers=(),
        reload_timeout=10.0,
        sync_timeout=10.0,
    )
    return replace(base, **overrides)


StartController = Callable[..., Awaitable[Controller]]


@pytest.fixture
async def start_controller(config_dir: Path) -> AsyncIterator[StartController]:
    """start_controller(store=None, use_store_source=True, **options) -> a started Controller,
    its config dir under ``config_dir`` unless an option names one. By default the test fills
    ``store`` itself; use_store_source=False lets the controller
    build its own source from the options (a kubeconfig). All controllers are stopped,
    nginx included, at teardown whatever the test did."""
    controllers: list[Controller] = []

    async def start(store: Store | None = None, use_store_source: bool = True, **overrides: Any) -> Controller:
        sub = config_dir / f"c{len(controllers)}"
        sub.mkdir(mode=0o711)
        options = make_options(Path(overrides.pop("config_dir", sub)), **overrides)
        store = store if store is not None else Store()
        source = StoreSource(store, WATCHED) if use_store_source else None
        controller = Controller(options, store=store, source=source)
        controllers.append(controller)
        await controller.start()
        return controller

    yield start
    for controller in controllers:
        stopping = asyncio.create_task(controller.stop())
        done, _ = await asyncio.wait({stopping}, timeout=30)
        if not done:
            for task in asyncio.all_tasks():
                task.print_stack()
            stopping.cancel()
            pid = controller.nginx.pid
            if pid is not None:  # our own child: never leave it running
                os.kill(pid, signal.SIGKILL)
            raise AssertionError("controller.stop() did not finish within 30s")
        stopping.result()


@pytest.fixture
def pool_every_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every poolable host joins a pool (ingress/pooling.py), as from host-pool-threshold
    hosts on: a ConfigMap without that key gets threshold 0."""
    plain = settings_module.NginxSettings

    def pooling(**values: Any) -> settings_module.NginxSettings:
        return plain(**{"host_pool_threshold": 0, **values})

    monkeypatch.setattr(settings_module, "NginxSettings", pooling)


@pytest.fixture
def picky_nginx(config_dir: Path) -> tuple[str, Path]:
    """An nginx whose ``-t`` also rejects any configuration naming reject-me.*, and every
    configuration while the marker file exists: stands in for input nginx refuses."""
    marker = config_dir / "fail-all"
    script = config_dir / "picky-nginx"
    script.write_text(f"""#!/bin/sh
conf=""; testing=""; prev=""
for a in "$@"; do
  [ "$a" = "-t" ] && testing=1
  [ "$prev" = "-c" ] && conf="$a"
  prev="$a"
done
if [ -n "$testing" ] && [ -n "$conf" ]; then
  if grep -q 'reject-me' "$conf"; then
    echo "nginx: [emerg] unknown directive \\"reject-me\\" in $conf:1" >&2; exit 1
  fi
  if [ -e "{marker}" ]; then echo "nginx: [emerg] injected failure in $conf:1" >&2; exit 1; fi
fi
exec {NGINX} "$@"
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(script), marker


@pytest.fixture
async def backends() -> AsyncIterator[Backends]:
    b = Backends()
    yield b
    await b.stop()


async def services(backends: Backends, store: Store, **groups: tuple[str, ...]) -> dict[str, tuple[list[str], int]]:
    """Our IngressClass, and one Service per keyword (port 80, "http"), its ready endpoints
    backends named by the tuple. Returns each Service's (backend addresses, port)."""
    o.put(store, o.ingress_class())
    started: dict[str, tuple[list[str], int]] = {}
    for svc, names in groups.items():
        addrs, port = started[svc] = await backends.start(*names)
        o.put(store, o.service(svc, ("http", 80, "http")), o.endpoint_slice(svc, addrs, port))
    return started


@pytest.fixture(scope="session")
def authority() -> Authority:
    return Authority.create()


@dataclass
class Reply:
    """An HTTP answer through nginx: status, headers, body, and the body as JSON when a backend sent it."""

    status: int
    headers: dict[str, str]
    text: str
    data: Any = None

    @property
    def backend(self) -> str | None:
        return self.data.get("backend") if isinstance(self.data, dict) else None


@dataclass
class Client:
    """Requests to the controller's nginx with a chosen Host header and SNI name."""

    controller: Controller
    ssl_context: ssl.SSLContext | None = None
    timeout: float = 5.0
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # A new connection per request: no keep-alive can hide which config served it.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        host: str | None,
        path: str = "/",
        *,
        https: bool = False,
        sni: str | None = None,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        verify: bool = True,
        data: bytes | None = None,
    ) -> Reply:
        opts = self.controller.options
        port = opts.https_port if https else opts.http_port
        url = URL(f"{'https' if https else 'http'}://127.0.0.1:{port}{path}", encoded=True)
        hdrs = dict(headers or {})
        if host is not None:
            hdrs["Host"] = host
        kwargs: dict[str, Any] = {}
        if https:
            if verify and self.ssl_context is not None:
                kwargs["ssl"] = self.ssl_context
                kwargs["server_hostname"] = sni or host
            else:
                kwargs["ssl"] = False
                if sni or host:
                    kwargs["server_hostname"] = sni or host
        session = await self.session()
        async with session.request(
            method, url, headers=hdrs, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=self.timeout),
            data=data, **kwargs,
        ) as resp:  # fmt: skip
            text = await resp.text()
            data = None
            if resp.headers.get("Content-Type", "").startswith("application/json"):
                data = json.loads(text)
            return Reply(resp.status, dict(resp.headers), text, data)

    async def answers(
        self, host: str | None, path: str = "/", *, status: int = 200, backend: str | None = None
    ) -> bool:
        """For polling with ``until``: whether nginx answers so now. A connection refused or cut
        (nginx not listening yet, or swapping workers) counts as not yet, not as a failure."""
        try:
            reply = await self.request(host, path)
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False
        return reply.status == status and (backend is None or reply.backend == backend)


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(controller: Controller, ssl_context: ssl.SSLContext | None = None) -> Client:
        c = Client(controller, ssl_context)
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.close()


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll a condition (a plain or an async callable) until it holds; fail the test after ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = check()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"condition not met within {timeout}s") from None


def metric(controller: Controller, name: str, **labels: str) -> float:
    """A sample of the controller's own registry; 0 for a labelled counter not yet created."""
    value = controller.metrics.registry.get_sample_value(name, labels or None)
    return value if value is not None else 0.0


def nginx_workers(controller: Controller) -> set[int]:
    """The controller's nginx workers now. A reload counts as done once one new worker answers,
    yet an old worker may still accept a connection until it exits: take these before a change,
    and ``await retired(...)`` them before asserting that no request meets the old configuration."""
    master = controller.nginx.pid
    assert master is not None
    workers = children(master)
    assert workers, "nginx's workers not found in /proc"  # else retired() would prove nothing
    return workers


async def retired(controller: Controller, workers: set[int]) -> None:
    """Until none of ``workers`` is among the master's children any more (asked of the master,
    not of the PIDs alone: a PID freed by a worker may be handed to another process)."""
    master = controller.nginx.pid
    assert master is not None
    await until(lambda: not workers & children(master))
