"""The live data plane through real nginx. Endpoints, canary weights, balancing and
certificates change with no reload (the reload counter stands still, the same worker PIDs
serve) while bounded loads of keep-alive clients or TLS handshakes run, and each change serves
within a second; a restarted nginx, or one started from a deep config dir, gets its data;
start-up names the Debian packages when the Lua module is missing."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import aiohttp
import pytest
from cryptography import x509

from ingress.controller import Controller, ControllerError
from ingress.layout import MAX_SOCKET_PATH, Layout
from kubewatch import Store
from tests.ingress import objects as o
from tests.ingress.conftest import metric, nginx_workers, retired, services, until
from tests.ingress.objects import ann
from tests.ingress.tlsutil import Authority

RELOADS = "portolan_ingress_reloads_total"
PUSHES = "portolan_ingress_data_pushes_total"
RESTARTS = "portolan_ingress_nginx_restarts_total"
LIVE = 1.0  # seconds: how soon a change must be served
UNAVAILABLE = "503"  # what a probe meets while a Service has no ready endpoint

Probe = Callable[[aiohttp.ClientSession], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Sample:
    """One probe made under load: when it ran and what it met."""

    started: float  # time.monotonic() when the probe began
    ended: float
    outcome: str  # the backend that answered, another status, a certificate serial, or what failed


class Load:
    """``clients`` clients, each on one keep-alive connection of its own, running ``probe`` in a
    loop until stopped: ``limit`` probes in all at most, for ``seconds`` at most."""

    def __init__(self, probe: Probe, *, clients: int = 4, limit: int = 20_000, seconds: float = 60.0) -> None:
        self.probe = probe
        self.clients = clients
        self.limit = limit
        self.seconds = seconds
        self.samples: list[Sample] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Load:
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.clients)]
        await self.probes_after(time.monotonic())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _client(self) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            try:
                async with asyncio.timeout(self.seconds):
                    while not self._stop.is_set() and len(self.samples) < self.limit:
                        began = time.monotonic()
                        try:
                            outcome = await self.probe(session)
                        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                            outcome = f"failed: {exc!r}"
                        self.samples.append(Sample(began, time.monotonic(), outcome))
            except TimeoutError:
                pass  # out of time: the checks then find the probes missing

    def since(self, moment: float) -> list[Sample]:
        return [s for s in self.samples if s.started >= moment]

    async def probes_after(self, moment: float, count: int = 5) -> None:
        """Until ``count`` probes that began after ``moment`` have ended."""
        await until(lambda: len(self.since(moment)) >= count, timeout=5)


def http_probe(controller: Controller, host: str, path: str = "/", headers: dict[str, str] | None = None) -> Probe:
    """A GET through nginx; the outcome is the backend's name, or the status without one."""
    url = f"http://127.0.0.1:{controller.options.http_port}{path}"
    sent = {"Host": host, **(headers or {})}

    async def probe(session: aiohttp.ClientSession) -> str:
        async with session.get(url, headers=sent, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            if resp.status == 200:
                return str((await resp.json())["backend"])
            await resp.read()
            return str(resp.status)

    return probe


@dataclass(frozen=True, slots=True)
class Step:
    """One change of a timeline: when it was made, when nginx took it, what probes may meet from then on."""

    began: float  # the change was made (nginx may hold it from now on)
    live: float  # nginx took it: its data push was acknowledged
    serves: frozenset[str]  # the outcomes a probe may meet while nginx holds it


class Timeline:
    """Changes made under a load, each awaited until nginx takes it (within LIVE seconds) and
    probed before the next; ``check`` then holds every probe to the changes of its time."""

    def __init__(self, controller: Controller, load: Load, serves: Iterable[str]) -> None:
        self.controller = controller
        self.load = load
        self.steps = [Step(float("-inf"), float("-inf"), frozenset(serves))]

    async def change(self, serves: Iterable[str], action: Callable[[], object], probes: int = 5) -> None:
        began = time.monotonic()
        live = await taken(self.controller, action, f"change {len(self.steps)} (to {sorted(serves)})")
        self.steps.append(Step(began, live, frozenset(serves)))
        await self.load.probes_after(live, probes)  # traffic met it before the next change

    def allowed(self, sample: Sample) -> frozenset[str]:
        """What nginx may have held while the probe ran: each change from when it was made until
        the next one was taken."""
        out: frozenset[str] = frozenset()
        for step, after in zip(self.steps, [*self.steps[1:], None], strict=True):
            until_ = after.live if after is not None else float("inf")
            if step.began <= sample.ended and sample.started <= until_:
                out |= step.serves
        return out

    def check(self) -> None:
        wrong = [(s.outcome, sorted(self.allowed(s))) for s in self.load.samples if s.outcome not in self.allowed(s)]
        assert not wrong, f"{len(wrong)} of {len(self.load.samples)} probes met the wrong state: {wrong[:5]}"


async def taken(controller: Controller, action: Callable[[], object], what: str = "the change") -> float:
    """Make a change that needs no reload and wait until nginx took it: its data push was
    acknowledged within LIVE seconds. Returns that moment."""
    pushes = metric(controller, PUSHES)
    action()
    try:
        await until(lambda: metric(controller, PUSHES) > pushes, timeout=LIVE, interval=0.005)
    except AssertionError:
        raise AssertionError(f"{what} not live within {LIVE}s") from None
    return time.monotonic()


def no_reload(controller: Controller) -> Callable[[], None]:
    """Take nginx's state before changes; the check returned asserts that nginx was not reloaded
    since: the reload counter stood still and the same workers serve."""
    workers, reloads = nginx_workers(controller), metric(controller, RELOADS)

    def check() -> None:
        assert metric(controller, RELOADS) == reloads, "nginx was reloaded"
        assert nginx_workers(controller) == workers, "other nginx workers serve"

    return check


def putting(store: Store, *objs: o.Obj) -> Callable[[], None]:
    """The change that puts these objects in the store."""
    return lambda: o.put(store, *objs)


async def go_live(controller: Controller, store: Store, *objs: o.Obj) -> None:
    """Put objects that change only live data, until nginx took them."""
    await taken(controller, putting(store, *objs))


def slice_of(name: str, addresses: list[str], port: int, not_ready: tuple[str, ...] = ()) -> o.Obj:
    """An EndpointSlice of Service "web"."""
    return o.endpoint_slice("web", addresses, port, name=name, not_ready=not_ready)


async def test_endpoints_switch_under_load_without_reload(start_controller, backends) -> None:
    store = Store()
    a, a_port = await backends.start("a1", "a2")
    b, b_port = await backends.start("b1", "b2")
    c, c_port = await backends.start("c1")
    o.put(store, o.ingress_class(), o.service("web", ("http", 80, "http")), slice_of("main", a, a_port),
          o.ingress("i", o.rule("foo.com", o.path("/", "web"))))  # fmt: skip
    controller = await start_controller(store)
    unreloaded = no_reload(controller)
    set_a, set_b = {"a1", "a2"}, {"b1", "b2"}

    def put(*objs: o.Obj) -> Callable[[], None]:
        return putting(store, *objs)

    changes: list[tuple[set[str], Callable[[], None]]] = [  # (who answers then, the change)
        (set_b, put(slice_of("main", b, b_port))),
        (set_a, put(slice_of("main", a, a_port))),
        (set_a | {"c1"}, put(slice_of("extra", c, c_port))),  # a second slice added
        ({"a1", "c1"}, put(slice_of("main", a[:1], a_port, not_ready=(a[1],)))),  # a2 not ready
        ({"a1"}, lambda: o.remove(store, slice_of("extra", c, c_port))),  # the slice removed
        (set_a, put(slice_of("main", a, a_port))),  # a2 ready again
        ({UNAVAILABLE}, put(slice_of("main", [], a_port, not_ready=tuple(a)))),  # no ready endpoint
        (set_b, put(slice_of("main", b, b_port))),  # and back
    ]
    for i in range(12):  # back and forth between two whole sets
        changes.append((set_a, put(slice_of("main", a, a_port))) if i % 2 == 0 else
                       (set_b, put(slice_of("main", b, b_port))))  # fmt: skip
    async with Load(http_probe(controller, "foo.com")) as load:
        timeline = Timeline(controller, load, set_a)
        for serves, action in changes:
            await timeline.change(serves, action)
    timeline.check()
    assert len(load.samples) > 20 * len(changes)
    unreloaded()


async def test_no_ready_endpoint_is_503_until_one_is_ready(start_controller, backends, client_for) -> None:
    store = Store()
    o.put(store, o.ingress_class(), o.service("web", ("http", 80, "http")),
          o.endpoint_slice("web", [], 8080, not_ready=("127.0.0.250",)),
          o.ingress("i", o.rule("foo.com", o.path("/", "web"))))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    unreloaded = no_reload(controller)
    reply = await client.request("foo.com", "/x")
    assert reply.status == 503  # the balancer's error_page, not a 500
    assert reply.backend is None
    conf = controller.layout.conf.read_text()  # the route proxies: its only 503 is the error_page's
    assert conf.count("return 503;") == conf.count("location @portolan_unavailable {")
    addrs, port = await backends.start("w1")
    o.put(store, o.endpoint_slice("web", addrs, port))
    await until(lambda: client.answers("foo.com", backend="w1"), timeout=LIVE)
    o.put(store, o.endpoint_slice("web", [], port, not_ready=tuple(addrs)))
    await until(lambda: client.answers("foo.com", status=503), timeout=LIVE)
    unreloaded()


async def test_canary_weight_and_endpoints_under_load(start_controller, backends) -> None:
    store = Store()
    await services(backends, store, main=("m1",), new=("n1",))
    n2, n2_port = await backends.start("n2")
    n1, n1_port = backends.started[1].address, backends.started[1].port

    def canary(weight: str) -> Callable[[], None]:
        return putting(store, canary_ingress(canary_weight=weight))

    def canary_endpoints(*addresses: str, port: int = n1_port) -> Callable[[], None]:
        ready = o.endpoint_slice("new", list(addresses), port, not_ready=() if addresses else (n1,))
        return putting(store, ready)

    o.put(store, o.ingress("main", o.rule("foo.com", o.path("/", "main")), created="2024-01-01T00:00:00Z"),
          canary_ingress(canary_weight="0"))  # fmt: skip
    controller = await start_controller(store)
    unreloaded = no_reload(controller)
    async with Load(http_probe(controller, "foo.com")) as load:
        timeline = Timeline(controller, load, {"m1"})
        await timeline.change({"n1"}, canary("100"))
        await timeline.change({"n2"}, canary_endpoints(*n2, port=n2_port))
        await timeline.change({"m1"}, canary("0"))
        await timeline.change({"n2"}, canary("100"))
        await timeline.change({"n1"}, canary_endpoints(n1))
        # A canary without a ready endpoint is skipped, as ingress-nginx does: the primary serves.
        await timeline.change({"m1"}, canary_endpoints())
        await timeline.change({"n1"}, canary_endpoints(n1))
        await timeline.change({"m1", "n1"}, canary("50"), probes=100)
        await timeline.change({"m1"}, canary("0"))
    timeline.check()
    split = timeline.steps[-2]  # weight 50: between it going live and the next change
    halves = [s.outcome for s in load.samples if split.live <= s.started and s.ended <= timeline.steps[-1].began]
    # traffic split
    assert halves.count("m1") > len(halves) / 5
    assert halves.count("n1") > len(halves) / 5
    unreloaded()


def canary_ingress(**annotations: str) -> o.Obj:
    """The canary Ingress of foo.com, to Service "new"."""
    return o.ingress("canary", o.rule("foo.com", o.path("/", "new")), created="2024-01-02T00:00:00Z",
                     annotations=ann(canary="true", **annotations))  # fmt: skip


CANARY = "canary"  # in CANARY_DECISIONS: whichever endpoint the canary Service has now
CANARY_DECISIONS: list[tuple[dict[str, str], list[tuple[dict[str, str], str]]]] = [
    # (the canary's annotations, [(request headers, who answers)])
    ({"canary_by_header": "X-Canary"},
     [({"X-Canary": "always"}, CANARY), ({"X-Canary": "never"}, "m1"), ({"X-Canary": "x"}, "m1"), ({}, "m1")]),
    ({"canary_by_header": "X-Canary", "canary_by_header_value": "v2"},
     [({"X-Canary": "v2"}, CANARY), ({"X-Canary": "always"}, "m1"), ({}, "m1")]),
    ({"canary_by_header": "X-Region", "canary_by_header_pattern": "^eu-[a-z]+$"},
     [({"X-Region": "eu-west"}, CANARY), ({"X-Region": "us-east"}, "m1"), ({"X-Canary": "always"}, "m1")]),
    ({"canary_by_cookie": "beta"},
     [({"Cookie": "beta=always"}, CANARY), ({"Cookie": "beta=never"}, "m1"), ({"X-Region": "eu-west"}, "m1")]),
    ({"canary_by_cookie": "beta", "canary_weight": "100"},
     [({"Cookie": "beta=never"}, "m1"), ({}, CANARY)]),
]  # fmt: skip


async def test_canary_decisions_change_live(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, main=("m1",), new=("n1",))
    n1, port = backends.started[1].address, backends.started[1].port
    n2, n2_port = await backends.start("n2")
    o.put(store, o.ingress("main", o.rule("foo.com", o.path("/", "main")), created="2024-01-01T00:00:00Z"),
          canary_ingress())  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    unreloaded = no_reload(controller)
    switches = [(o.endpoint_slice("new", n2, n2_port), "n2"), (o.endpoint_slice("new", [n1], port), "n1")]
    for decision, cases in CANARY_DECISIONS:
        await go_live(controller, store, canary_ingress(**decision))
        for endpoints, name in switches:  # the canary Service's endpoints switch under each decision
            await go_live(controller, store, endpoints)
            for headers, want in cases:
                for _ in range(3):
                    reply = await client.request("foo.com", "/", headers=headers)
                    assert reply.backend == (name if want == CANARY else want), (decision, headers)
    unreloaded()


async def test_cookie_affinity_survives_a_new_endpoint(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, web=("w1", "w2", "w3"))
    o.put(store, o.ingress("i", o.rule("foo.com", o.path("/", "web")),
                           annotations=ann(affinity="cookie", session_cookie_name="route")))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    unreloaded = no_reload(controller)

    async def backend_of(cookie: str) -> str | None:
        return (await client.request("foo.com", "/", headers={"Cookie": cookie})).backend

    sessions: dict[str, str | None] = {}
    for _ in range(40):
        first = await client.request("foo.com", "/")
        cookie = first.headers["Set-Cookie"].split(";")[0]
        sessions[cookie] = first.backend
        assert [await backend_of(cookie) for _ in range(3)] == [first.backend] * 3, cookie
    assert set(sessions.values()) == {"w1", "w2", "w3"}
    more, port = await backends.start("w4")
    await go_live(controller, store, o.endpoint_slice("web", more, port, name="web-more"))
    moved = {cookie: now for cookie in sessions if (now := await backend_of(cookie)) != sessions[cookie]}
    # Consistent hashing: a session moves only to the new endpoint, and most stay (about 1 in 4 move).
    assert set(moved.values()) == {"w4"}, moved
    assert len(moved) <= len(sessions) / 2
    unreloaded()


async def test_round_robin_and_upstream_hash_by(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, web=("w1", "w2", "w3"))
    o.put(store, o.ingress("rr", o.rule("rr.com", o.path("/", "web"))),
          o.ingress("hash", o.rule("hash.com", o.path("/", "web")), annotations=ann(upstream_hash_by="$arg_id")))
    controller = await start_controller(store)
    client = client_for(controller)
    spread = [(await client.request("rr.com", "/")).backend for _ in range(30)]
    for name in ("w1", "w2", "w3"):  # each worker takes its turn: close to 10 each
        assert 5 <= spread.count(name) <= 15, spread
    by_id = {}
    for i in range(20):
        got = {(await client.request("hash.com", f"/?id={i}")).backend for _ in range(3)}
        assert len(got) == 1, (i, got)
        by_id[i] = got.pop()
    assert len(set(by_id.values())) >= 2, by_id




@pytest.mark.parametrize(
    "annotations",
    [{}, {"load_balance": "ewma"}, {"upstream_hash_by": "$arg_id"},
     {"affinity": "cookie", "session_cookie_name": "route"}],
    ids=["round_robin", "ewma", "hash", "affinity"],
)  # fmt: skip
async def test_a_dead_endpoint_still_listed_is_passed_over(
    start_controller, backends, client_for, annotations: dict[str, str]
) -> None:
    # A pod gone before its EndpointSlice says so: the balancer tries another endpoint.
    store = Store()
    await services(backends, store, web=("w1", "w2", "w3"))
    o.put(store, o.ingress("i", o.rule("foo.com", o.path("/", "web")), annotations=ann(**annotations)))
    controller = await start_controller(store)
    client = client_for(controller)
    await backends.stop("w2")
    got = [(await client.request("foo.com", f"/?id={i}", headers={"Cookie": f"route={i}"})).backend
           for i in range(30)]  # fmt: skip
    assert set(got) <= {"w1", "w3"}, got  # each answered, by a live endpoint
    assert len(got) == 30, got


async def test_ewma_prefers_the_faster_endpoint(start_controller, backends, client_for) -> None:
    store = Store()
    o.put(store, o.ingress_class(), o.service("mixed", ("http", 80, "http")))
    fast, fast_port = await backends.start("fast")
    slow, slow_port = await backends.start("slow", delay=0.05)
    o.put(store, o.endpoint_slice("mixed", fast, fast_port, name="fast"),
          o.endpoint_slice("mixed", slow, slow_port, name="slow"),
          o.config_map("cfg", {"load-balance": "ewma"}),
          o.ingress("cm", o.rule("cm.com", o.path("/", "mixed"))),
          o.ingress("ann", o.rule("ann.com", o.path("/", "mixed")), annotations=ann(load_balance="ewma")),
          o.ingress("rr", o.rule("rr.com", o.path("/", "mixed")),
                    annotations=ann(load_balance="round_robin")))  # fmt: skip
    controller = await start_controller(store, configmap=("default", "cfg"))
    client = client_for(controller)

    async def slow_share(host: str) -> int:
        """How many of 30 requests the slow endpoint answered (each answered, by one of the two)."""
        got = [(await client.request(host, "/")).backend for _ in range(30)]
        assert set(got) <= {"fast", "slow"}, got
        return got.count("slow")

    # ewma (the ConfigMap's, or the annotation's): the slow endpoint is tried, then left alone.
    assert await slow_share("cm.com") <= 6
    assert await slow_share("ann.com") <= 6
    assert await slow_share("rr.com") >= 10  # round_robin: half of them
    # The ConfigMap back to round_robin: the annotation still says ewma.
    reloads = metric(controller, RELOADS)
    o.put(store, o.config_map("cfg", {"load-balance": "round_robin"}))
    await until(lambda: metric(controller, RELOADS) > reloads)
    assert await slow_share("cm.com") >= 10
    assert await slow_share("ann.com") <= 6


def tls_probe(controller: Controller, sni: str, context: ssl.SSLContext) -> Probe:
    """A TLS handshake with nginx, the certificate verified for ``sni``; the outcome is its serial."""

    async def probe(_: aiohttp.ClientSession) -> str:
        async with asyncio.timeout(5):
            _, writer = await asyncio.open_connection(
                "127.0.0.1", controller.options.https_port, ssl=context, server_hostname=sni
            )
        try:
            return serial_of(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
        finally:
            writer.close()

    return probe


def serial_of(certificate: bytes) -> str:
    """The serial of a DER or PEM certificate."""
    if certificate.startswith(b"-----"):
        return str(x509.load_pem_x509_certificate(certificate).serial_number)
    return str(x509.load_der_x509_certificate(certificate).serial_number)


async def test_secret_rotated_under_handshakes(start_controller, backends, authority: Authority, tmp_path) -> None:
    store = Store()
    await services(backends, store, web=("w1",))
    crt, key = authority.issue("foo.com")
    tls = [{"hosts": ["foo.com"], "secretName": "foo-tls"}]
    o.put(store, o.tls_secret("foo-tls", crt, key), o.ingress("i", o.rule("foo.com", o.path("/", "web")), tls=tls))
    controller = await start_controller(store)
    unreloaded = no_reload(controller)
    async with Load(tls_probe(controller, "foo.com", authority.client_context(tmp_path)), clients=3) as load:
        timeline = Timeline(controller, load, {serial_of(crt)})
        for _ in range(3):  # a new certificate (a new serial) each time
            crt, key = authority.issue("foo.com")
            secret = o.tls_secret("foo-tls", crt, key)
            await timeline.change({serial_of(crt)}, lambda secret=secret: o.put(store, secret))
    timeline.check()  # every handshake verified, and met the certificate of its time
    assert len(load.samples) > 30
    unreloaded()


async def test_certificates_follow_their_secrets_live(
    start_controller, backends, authority: Authority, tmp_path
) -> None:
    store = Store()
    await services(backends, store, web=("w1",))
    default_crt, default_key = authority.issue("default.test")
    pair_crt, pair_key = authority.issue("a.com")
    wild_crt, wild_key = authority.issue("*.wild.com")
    o.put(
        store,
        o.tls_secret("default-tls", default_crt, default_key),
        o.tls_secret("pair", pair_crt, pair_key),
        o.tls_secret("wild", wild_crt, wild_key),
        o.ingress("pair", o.rule("a.com", o.path("/", "web")), o.rule("b.com", o.path("/", "web")),
                  tls=[{"hosts": ["a.com", "b.com"], "secretName": "pair"}]),
        o.ingress("wild", o.rule("x.wild.com", o.path("/", "web")), o.rule("*.wild.com", o.path("/", "web")),
                  tls=[{"hosts": ["x.wild.com", "*.wild.com"], "secretName": "wild"}]),
    )  # fmt: skip
    controller = await start_controller(store, default_ssl_certificate=("default", "default-tls"))
    verified = authority.client_context(tmp_path)
    unverified = ssl.create_default_context()
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
    unreloaded = no_reload(controller)

    async def served(sni: str, context: ssl.SSLContext = unverified) -> str:
        """The serial of the certificate nginx serves for ``sni``."""
        async with aiohttp.ClientSession() as session:
            return await tls_probe(controller, sni, context)(session)

    async def expect(serials: dict[str, bytes]) -> None:
        for sni, crt in serials.items():
            assert await served(sni) == serial_of(crt), sni

    # b.com is not in the certificate yet: the default one.
    await expect({"a.com": pair_crt, "b.com": default_crt})
    # A name added to the Secret's certificate.
    pair_crt, pair_key = authority.issue("a.com", "b.com")
    await go_live(controller, store, o.tls_secret("pair", pair_crt, pair_key))
    await expect({"a.com": pair_crt, "b.com": pair_crt})
    assert await served("b.com", verified) == serial_of(pair_crt)
    # A wildcard certificate: the host the TLS section names and any other under it.
    await expect({"x.wild.com": wild_crt, "y.wild.com": wild_crt})
    wild_crt, wild_key = authority.issue("*.wild.com")
    await go_live(controller, store, o.tls_secret("wild", wild_crt, wild_key))
    await expect({"x.wild.com": wild_crt, "y.wild.com": wild_crt})
    assert await served("y.wild.com", verified) == serial_of(wild_crt)
    # The Secret deleted: its hosts fall back to the default certificate, itself rotated live.
    await taken(controller, lambda: o.remove(store, o.tls_secret("pair", pair_crt, pair_key)))
    await expect({"a.com": default_crt, "b.com": default_crt, "x.wild.com": wild_crt})
    default_crt, default_key = authority.issue("default.test")
    await go_live(controller, store, o.tls_secret("default-tls", default_crt, default_key))
    await expect({"a.com": default_crt, "unknown.test": default_crt, "x.wild.com": wild_crt})
    unreloaded()


@pytest.mark.parametrize(
    "modules",
    [
        ("/nonexistent/ngx_http_lua_module.so",),  # not installed
        ("/usr/lib/nginx/modules/ndk_http_module.so",),  # the NDK alone: nginx knows no Lua directive
    ],
    ids=["missing", "not-loaded"],
)
async def test_without_the_lua_module_start_names_the_packages(start_controller, modules: tuple[str, ...]) -> None:
    store = Store()
    o.put(store, o.ingress_class())
    with pytest.raises(ControllerError) as failed:
        await start_controller(store, lua_modules=modules)
    for package in ("libnginx-mod-http-lua", "lua-resty-core", "lua-resty-lrucache"):
        assert package in str(failed.value)


async def test_deep_config_dir_serves_and_goes_live(start_controller, backends, client_for, config_dir) -> None:
    deep = config_dir / ("d" * 50) / ("e" * 50)
    assert len(os.fsencode(Layout.at(deep).status_socket)) > MAX_SOCKET_PATH
    store = Store()
    await services(backends, store, web=("w1",))
    o.put(store, o.ingress("i", o.rule("foo.com", o.path("/", "web"))))
    controller = await start_controller(store, config_dir=str(deep))
    assert controller.layout.root == deep
    client = client_for(controller)
    assert (await client.request("foo.com", "/")).backend == "w1"
    unreloaded = no_reload(controller)
    more, more_port = await backends.start("w2")
    await go_live(controller, store, o.endpoint_slice("web", more, more_port))
    assert (await client.request("foo.com", "/")).backend == "w2"
    unreloaded()


async def test_killed_master_is_restarted_with_its_data(start_controller, backends, client_for) -> None:
    store = Store()
    addrs, port = (await services(backends, store, web=("w1",)))["web"]
    o.put(store, o.ingress("i", o.rule("foo.com", o.path("/", "web"))))
    controller = await start_controller(store)
    client = client_for(controller)
    reloads = metric(controller, RELOADS)
    more, more_port = await backends.start("w2")
    kills = [(None, "w1"), (o.endpoint_slice("web", more, more_port), "w2")]  # (changed while down, who answers)
    for count, (change, backend) in enumerate(kills, 1):
        pid = controller.nginx.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the master the controller started, by its PID
        if change is not None:
            o.put(store, change)
        await until(lambda pid=pid: controller.nginx.pid not in (None, pid))
        # The new master's shared memory starts empty: the controller pushes everything again.
        await until(lambda backend=backend: client.answers("foo.com", backend=backend), timeout=5)
        assert metric(controller, RESTARTS) == count
    assert metric(controller, RELOADS) == reloads  # restarts, not reloads
    assert metric(controller, "portolan_ingress_reload_failures_total", reason="data") == 0  # nor failed pushes
    # And it takes live changes again, with no reload.
    unreloaded = no_reload(controller)
    await go_live(controller, store, o.endpoint_slice("web", addrs, port))
    assert (await client.request("foo.com", "/")).backend == "w1"
    unreloaded()


async def test_external_name_ip_goes_through_the_balancer(start_controller, backends, client_for) -> None:
    store = Store()
    o.put(store, o.ingress_class())
    (one,), port = await backends.start("ext1")
    (two,), two_port = await backends.start("ext2")

    def external(ip: str, port: int) -> o.Obj:
        return o.service("ext", ("http", port, port), type="ExternalName", external_name=ip)

    o.put(store, external(one, port), o.ingress("i", o.rule("foo.com", o.path("/", "ext", port="http"))))
    controller = await start_controller(store)
    client = client_for(controller)
    assert (await client.request("foo.com", "/")).backend == "ext1"
    conf = controller.layout.conf.read_text()
    assert one not in conf
    assert "proxy_pass http://portolan_balancer;" in conf
    # Another IP (and port) for the name: live data too.
    unreloaded = no_reload(controller)
    await go_live(controller, store, external(two, two_port))
    assert (await client.request("foo.com", "/")).backend == "ext2"
    unreloaded()


async def test_upstream_keepalive_through_the_balancer(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, web=("w1",))
    o.put(store, o.ingress("i", o.rule("foo.com", o.path("/", "web"))))
    controller = await start_controller(store)
    client = client_for(controller)  # a new client connection per request
    replies = [await client.request("foo.com", "/") for _ in range(10)]
    # Each worker reuses its connection to the backend: as many as workers, not as requests.
    connections = {tuple(r.data["peer"]) for r in replies}
    assert len(connections) <= len(nginx_workers(controller)) < len(replies)
    assert all(r.data["headers"].get("Connection", "") in ("", "keep-alive") for r in replies)


async def test_ipv6_endpoints_through_the_balancer(start_controller, backends, client_for) -> None:
    store = Store()
    o.put(store, o.ingress_class(), o.service("web", ("http", 80, "http")))
    v6, port = await backends.start("six", address="::1")
    v4, v4_port = await backends.start("four")
    o.put(store, o.endpoint_slice("web", v6, port, name="web-v6", address_type="IPv6"),
          o.ingress("i", o.rule("foo.com", o.path("/", "web")), o.rule("hash.com", o.path("/", "web")),
                    annotations=ann(upstream_hash_by="$arg_id")))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    for host in ("foo.com", "hash.com"):
        reply = await client.request(host, "/?id=1")
        assert (reply.status, reply.backend) == (200, "six"), host
    # Both families behind one Service.
    await go_live(controller, store, o.endpoint_slice("web", v4, v4_port, name="web-v4"))
    seen = {(await client.request("foo.com", "/")).backend for _ in range(8)}
    assert seen == {"six", "four"}


@pytest.mark.parametrize(
    "sizes", ["configuration_data: 32m", "certificate_data: 32m", "configuration_data: 16m, certificate_data: 16m"]
)
async def test_resized_shared_dicts_get_their_data_again(
    start_controller, backends, client_for, authority: Authority, tmp_path, sizes: str
) -> None:
    # nginx gives a shared dict whose size changed a new, empty zone on reload.
    store = Store()
    await services(backends, store, web=("w1",))
    crt, key = authority.issue("foo.com")
    o.put(store, o.tls_secret("foo-tls", crt, key), o.config_map("cfg", {}),
          o.ingress("i", o.rule("foo.com", o.path("/", "web")), tls=[{"hosts": ["foo.com"], "secretName": "foo-tls"}],
                    annotations=ann(ssl_redirect="false")))  # fmt: skip
    controller = await start_controller(store, configmap=("default", "cfg"))
    client = client_for(controller, authority.client_context(tmp_path))
    workers, reloads = nginx_workers(controller), metric(controller, RELOADS)
    o.put(store, o.config_map("cfg", {"lua-shared-dicts": sizes}))
    await until(lambda: metric(controller, RELOADS) > reloads)
    await retired(controller, workers)  # only the new workers, on the new zones, answer now
    await until(lambda: client.answers("foo.com", backend="w1"), timeout=LIVE)
    assert (await client.request("foo.com", "/", https=True)).backend == "w1"  # its certificate verified


async def test_data_too_big_for_its_dict_is_refused_and_the_rest_served(start_controller, backends, caplog) -> None:
    # Records are never evicted to make room for others (which would drop routes silently):
    # nginx refuses the push, the controller says what to raise, and what nginx held serves on.
    store = Store()
    await services(backends, store, web=("w1",))
    o.put(store, o.config_map("cfg", {"lua-shared-dicts": "configuration_data: 128k"}),
          o.ingress("i", o.rule("foo.com", o.path("/", "web"))))  # fmt: skip
    controller = await start_controller(store, configmap=("default", "cfg"))
    big = []
    for i in range(8):  # 8 Services of 1000 endpoints each (never connected to): ~150 KiB of peers
        addresses = [f"127.{n // 250 + 1}.{i}.{n % 250 + 1}" for n in range(1000)]
        big += [o.service(f"big{i}", ("http", 80, "http")), o.endpoint_slice(f"big{i}", addresses, 9),
                o.ingress(f"big{i}", o.rule(f"big{i}.com", o.path("/", f"big{i}")))]  # fmt: skip

    def refused() -> float:
        return metric(controller, "portolan_ingress_reload_failures_total", reason="data")

    async with Load(http_probe(controller, "foo.com"), clients=2) as load:
        o.put(store, *big)
        await until(lambda: refused() >= 2)  # the push, and the retry, refused
        assert "no memory" in caplog.text
        assert "raise lua-shared-dicts" in caplog.text
        assert not await healthy(controller)
        for obj in big:
            o.remove(store, obj)
        await until(lambda: healthy(controller))
        await load.probes_after(time.monotonic())
    assert {s.outcome for s in load.samples} == {"w1"}


async def healthy(controller: Controller) -> bool:
    """Whether the controller's /healthz says ok."""
    url = f"http://127.0.0.1:{controller.httpd.ports['healthz']}/healthz"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status == 200
