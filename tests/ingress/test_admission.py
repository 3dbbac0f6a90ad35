"""The validating admission webhook through a started controller (real nginx, its store and its
reconciler's hosts): AdmissionReview JSON posted over TLS as the API server posts it, checked
against what the controller itself does with the same objects."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ingress import admission
from ingress.classes import ClassPolicy
from ingress.cli import options_from, parser
from ingress.controller import Controller
from ingress.model import parse_record
from kubewatch import Ingress, Store
from tests.ingress import objects as o
from tests.ingress.conftest import free_ports, until
from tests.ingress.objects import A
from tests.ingress.procs import children
from tests.ingress.test_nginx_hostile import MARK, hostile_ingresses
from tests.ingress.tlsutil import Authority

SERVICE_NAME = "portolan-ingress-admission.portolan-ingress.svc"  # what the API server verifies
URL = "https://127.0.0.1:{port}" + admission.PATH


class Webhook:
    """Posts AdmissionReviews to a controller's webhook as the API server does (TLS, the CA of
    the caBundle, the Service's name)."""

    def __init__(self, controller: Controller, authority: Authority, directory: Path) -> None:
        assert controller.webhook is not None
        self.controller = controller
        self.url = URL.format(port=controller.webhook.port)
        self.context = authority.client_context(directory)
        self.session = aiohttp.ClientSession()

    async def post(self, body: bytes | Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) or not isinstance(body, dict) else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        async with self.session.post(self.url, data=data, ssl=self.context, server_hostname=SERVICE_NAME,
                                     headers=hdrs) as resp:  # fmt: skip
            text = await resp.text()
            return resp.status, json.loads(text) if resp.status == 200 else text

    async def review(self, obj: o.Obj, operation: str = "CREATE") -> dict[str, Any]:
        """The response part of the answer, whose uid is checked against the request's."""
        uid = str(uuid.uuid4())
        status, answer = await self.post(review(obj, operation, uid))
        assert status == 200, answer
        assert (answer["apiVersion"], answer["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
        assert answer["response"]["uid"] == uid
        return answer["response"]  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.session.close()


def review(obj: o.Obj | None, operation: str = "CREATE", uid: str = "0b9c3d2e-1111-4222-8333-444455556666") -> o.Obj:
    meta = obj.get("metadata", {}) if isinstance(obj, dict) else {}
    meta = meta if isinstance(meta, dict) else {}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
            "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
            "requestKind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
            "requestResource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", "default"),
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": obj,
            "oldObject": obj if operation == "UPDATE" else None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


@pytest.fixture
def webhook_pair(authority: Authority, tmp_path: Path) -> tuple[str, str]:
    crt, key = authority.issue(SERVICE_NAME, "portolan-ingress-admission")
    (tmp_path / "tls.crt").write_bytes(crt)
    (tmp_path / "tls.key").write_bytes(key)
    return str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")


@pytest.fixture
async def with_webhook(start_controller, webhook_pair, authority, tmp_path) -> AsyncIterator[Any]:
    """with_webhook(store, **options) -> (controller, Webhook client)."""
    clients: list[Webhook] = []

    async def start(store: Store, **options: Any) -> tuple[Controller, Webhook]:
        (port,) = free_ports(1)
        controller = await start_controller(store, validating_webhook=("127.0.0.1", port),
                                            validating_webhook_certificate=webhook_pair[0],
                                            validating_webhook_key=webhook_pair[1], **options)  # fmt: skip
        client = Webhook(controller, authority, tmp_path)
        clients.append(client)
        return controller, client

    yield start
    for client in clients:
        await client.close()


def web_service(store: Store) -> None:
    o.put(store, o.ingress_class(), o.service("web", ("http", 80, 8080)))


async def test_a_valid_ingress_is_allowed(with_webhook) -> None:
    store = Store()
    web_service(store)
    _, hook = await with_webhook(store)
    answer = await hook.review(o.ingress("shop", o.rule("shop.example", o.path("/", "web"))))
    assert answer["allowed"] is True
    assert not {"status", "warnings"} & set(answer)
    # DELETE changes no route; nothing is looked at.
    assert (await hook.review(None, "DELETE"))["allowed"] is True


def _denied(name: str, **kwargs: Any) -> o.Obj:
    rule = kwargs.pop("rule", o.rule(f"{name}.example", o.path("/", "web")))
    return o.ingress(name, rule, **kwargs)


# (Ingress, what the message must name: the field and the rule).
DENIED: list[tuple[o.Obj, str]] = [
    (_denied("ann-rewrite", annotations=o.ann(rewrite_target="/$1; ssl_engine x")),
     "annotation nginx.ingress.kubernetes.io/rewrite-target"),
    (_denied("ann-size", annotations=o.ann(proxy_body_size="1m; x")), "proxy-body-size"),
    (_denied("ann-bool", annotations=o.ann(ssl_redirect="yes")), "ssl-redirect: 'yes' is not true or false"),
    (_denied("ann-timeout", annotations=o.ann(proxy_read_timeout="99999999")), "proxy-read-timeout"),
    (_denied("ann-canary", annotations=o.ann(canary="true", canary_weight="120")),
     "canary-weight: 120 is more than canary-weight-total 100"),
    (_denied("host", rule=o.rule("Bad_Host.example", o.path("/", "web"))), "spec.rules[0].host"),
    (_denied("path", rule=o.rule("p.example", o.path("/a;b", "web"))), "spec.rules[0].http.paths[0].path"),
    (_denied("ptype", rule=o.rule("t.example", o.path("/", "web", path_type="Regex"))),
     "spec.rules[0].http.paths[0].pathType"),
    (_denied("svc", rule=o.rule("s.example", o.path("/", "Web_Svc"))),
     "spec.rules[0].http.paths[0].backend.service.name"),
    (_denied("port", rule=o.rule("n.example", o.path("/", "web", port=70000))), "service.port.number"),
    (o.ingress("empty"), "spec: an Ingress needs rules or a defaultBackend"),
]  # fmt: skip


async def test_denied_with_the_reason_the_controller_gives(with_webhook) -> None:
    store = Store()
    web_service(store)
    controller, hook = await with_webhook(store)
    for obj, reason in DENIED:
        answer = await hook.review(obj)
        assert answer["allowed"] is False, obj
        message = answer["status"]["message"]
        assert reason in message, (reason, message)
        # One code path: the model's own parse says the same.
        rec = o.record(obj)
        assert isinstance(rec, Ingress)
        parsed = parse_record(rec, f"default/{rec.name}", allow_snippets=False)
        assert message == f"Ingress default/{rec.name}: {getattr(parsed, 'reason', parsed)}"
    # ... and the controller, given them, rejects each with that very reason.
    o.put(store, *(obj for obj, _ in DENIED))
    await until(lambda: controller.model is not None and len(controller.model.rejected) == len(DENIED))
    assert controller.model is not None
    rejected = {r.ingress: r.reason for r in controller.model.rejected}
    for obj, _ in DENIED:
        name = obj["metadata"]["name"]
        assert (await hook.review(obj))["status"]["message"] == f"Ingress default/{name}: {rejected['default/' + name]}"


async def test_an_ignored_annotation_is_allowed_with_a_warning(with_webhook) -> None:
    store = Store()
    web_service(store)
    _, hook = await with_webhook(store)
    answer = await hook.review(_denied("warn", annotations={A + "configuration-snippet": "more_set_headers x;"}))
    assert answer["allowed"] is True
    assert answer["warnings"] == ["Ingress default/warn: annotation nginx.ingress.kubernetes.io/configuration-snippet "
                                  "ignored: snippets are disabled (allow-snippet-annotations)"]  # fmt: skip


async def test_a_path_held_by_an_older_ingress_is_denied_naming_it(with_webhook) -> None:
    store = Store()
    web_service(store)
    o.put(store, o.ingress("first", o.rule("shop.example", o.path("/api", "web"), o.path("/", "web")),
                           created="2024-01-01T00:00:00Z"),
          o.ingress("catchall", o.rule(None, o.path("/static", "web")), created="2024-01-01T00:00:00Z"))  # fmt: skip
    controller, hook = await with_webhook(store)
    assert controller.model is not None
    assert set(controller.model.ingresses) == {"default/first", "default/catchall"}

    def newer(name: str, *paths: o.Obj, host: str | None = "shop.example", **kw: Any) -> o.Obj:
        return o.ingress(name, o.rule(host, *paths), **{"created": "2024-06-01T00:00:00Z", **kw})

    cases: list[tuple[o.Obj, str, str | None]] = [  # (Ingress, operation, the message's end; None: allowed)
        (newer("second", o.path("/api", "web")), "CREATE",
         "Prefix /api on shop.example is already served by the older Ingress default/first"),
        (newer("slash", o.path("/api/", "web")), "CREATE", "is already served by the older Ingress default/first"),
        (newer("other-ns", o.path("/", "web"), namespace="team-b"), "CREATE",
         "Prefix / on shop.example is already served by the older Ingress default/first"),
        (newer("static", o.path("/static", "web"), host=None), "CREATE",
         "Prefix /static on any host is already served by the older Ingress default/catchall"),
        (newer("no-stamp", o.path("/api", "web"), created=""), "CREATE", "the older Ingress default/first"),
        (newer("exact", o.path("/api", "web", path_type="Exact")), "CREATE", None),  # another slot
        (newer("deeper", o.path("/api/v2", "web")), "CREATE", None),
        (newer("elsewhere", o.path("/api", "web"), host="other.example"), "CREATE", None),
        (newer("canary", o.path("/api", "web"), annotations=o.ann(canary="true", canary_weight="10")), "CREATE", None),
        (o.ingress("older", o.rule("shop.example", o.path("/api", "web")), created="2023-01-01T00:00:00Z"),
         "CREATE", None),  # it would win: nothing is settled against it
        (o.ingress("first", o.rule("shop.example", o.path("/api", "web"), o.path("/v3", "web")),
                   created="2024-01-01T00:00:00Z"), "UPDATE", None),  # itself is no rival
        (newer("theirs", o.path("/api", "web"), class_name="nginx"), "CREATE", None),  # not ours
    ]  # fmt: skip
    for obj, operation, message in cases:
        answer = await hook.review(obj, operation)
        name = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        if message is None:
            assert answer["allowed"] is True, (name, answer)
        else:
            assert answer["allowed"] is False, name
            assert answer["status"]["message"].startswith(f"Ingress {name}: ")
            assert message in answer["status"]["message"]
    # What the controller makes of the denied newcomer, given it anyway: the older one keeps the path.
    o.put(store, cases[0][0])
    await until(lambda: controller.model is not None and "default/second" in controller.model.ingresses)
    assert any("default/second: Prefix /api on shop.example is already served by default/first" in n
               for n in controller.model.notes)  # fmt: skip
    # Once built, changed Ingresses are no longer looked up in the store for each review.
    assert controller.webhook is not None
    assert (await hook.review(cases[1][0]))["allowed"] is False
    assert controller.webhook.reviewer.backlog == 0


async def test_the_store_counts_before_the_reconcile_has_built_it(with_webhook) -> None:
    """``kubectl apply -f`` of several Ingresses: each reaches the webhook before the debounced
    reconcile has built the ones before it; the store has them."""
    store = Store()
    web_service(store)
    o.put(store, o.ingress("old", o.rule("shop.example", o.path("/old", "web")), created="2024-01-01T00:00:00Z"))
    controller, hook = await with_webhook(store, debounce=60.0, max_delay=120.0)  # no reconcile in this test

    def claim(name: str, path: str, created: str = "2024-06-01T00:00:00Z", **kw: Any) -> o.Obj:
        return o.ingress(name, o.rule("shop.example", o.path(path, "web")), created=created, **kw)

    o.put(store, claim("first", "/api", "2024-02-01T00:00:00Z"))
    assert controller.model is not None
    assert "default/first" not in controller.model.ingresses
    answer = await hook.review(claim("second", "/api"))
    assert answer["allowed"] is False
    assert answer["status"]["message"].endswith("already served by the older Ingress default/first")
    assert (await hook.review(claim("x", "/old")))["allowed"] is False  # the model's own
    # Gone from the store, or no longer ours, or no longer valid: no rival, built or not.
    o.remove(store, claim("old", "/old"))
    assert (await hook.review(claim("x", "/old")))["allowed"] is True
    o.put(store, claim("first", "/api", "2024-02-01T00:00:00Z", class_name="nginx", resource_version="2"))
    assert (await hook.review(claim("second", "/api")))["allowed"] is True
    o.put(store, claim("first", "/api", "2024-02-01T00:00:00Z", resource_version="3"))
    assert (await hook.review(claim("second", "/api")))["allowed"] is False
    o.put(store, claim("first", "/api", "2024-02-01T00:00:00Z", resource_version="4",
                       annotations=o.ann(ssl_redirect="maybe")))  # fmt: skip
    assert (await hook.review(claim("second", "/api")))["allowed"] is True
    assert controller.webhook is not None
    assert controller.webhook.reviewer.backlog == 1  # old: gone, still built (first: invalid, never built)
    assert controller.reconciles == 1


async def test_classes_not_ours_are_allowed(with_webhook) -> None:
    store = Store()
    web_service(store)
    o.put(store, o.ingress_class("nginx", controller="k8s.io/ingress-nginx"))
    _, hook = await with_webhook(store)
    bad = o.ann(rewrite_target="/;PWNED")
    theirs = [
        _denied("by-class", class_name="nginx", annotations=bad),
        _denied("unknown-class", class_name="gone", annotations=bad),
        _denied("by-annotation", class_name=None, annotations={**bad, "kubernetes.io/ingress.class": "nginx"}),
        _denied("classless", class_name=None, annotations=bad),  # no --watch-ingress-without-class, no default
    ]
    for obj in theirs:
        assert (await hook.review(obj))["allowed"] is True, obj["metadata"]["name"]
    legacy_ours = _denied("legacy", class_name=None, annotations={**bad, "kubernetes.io/ingress.class": "portolan"})
    assert (await hook.review(legacy_ours))["allowed"] is False
    # The default IngressClass being ours makes class-less Ingresses ours.
    o.put(store, o.ingress_class(default=True))
    assert (await hook.review(theirs[3]))["allowed"] is False


async def test_watch_ingress_without_class_makes_classless_ours(with_webhook) -> None:
    store = Store()
    web_service(store)
    _, hook = await with_webhook(store, classes=ClassPolicy(watch_without_class=True))
    classless = _denied("classless", class_name=None, annotations=o.ann(rewrite_target="/;x"))
    assert (await hook.review(classless))["allowed"] is False
    theirs = _denied("theirs", class_name=None, annotations={"kubernetes.io/ingress.class": "nginx"})
    assert (await hook.review(theirs))["allowed"] is True


async def test_namespaces_not_watched_are_allowed(with_webhook) -> None:
    store = Store()
    web_service(store)
    _, hook = await with_webhook(store, watch_namespace="default")
    bad = o.ann(rewrite_target="/;x")
    assert (await hook.review(_denied("here", annotations=bad)))["allowed"] is False
    assert (await hook.review(_denied("there", annotations=bad, namespace="team-b")))["allowed"] is True


# IngressNightmare's smuggling through UIDs: the review's own (answered 400, never echoed) and
# the object's (denied, as the controller rejects it).
SMUGGLED_UIDS = ["x\n}\nssl_engine /tmp/PWNED.so;\n#", "../../PWNED", "a;PWNED", '"}PWNED{"', "", "PWNED" * 20, 7]
SMUGGLED_OBJECT_UIDS = ["x\n}\nssl_engine /tmp/PWNED.so;\n#", "../../PWNED", "a;PWNED", '"}PWNED{"', "PWNED" * 40]


def _files(*roots: Path) -> dict[Path, tuple[int, int]]:
    found: dict[Path, tuple[int, int]] = {}
    for root in roots:
        for path in root.rglob("*") if root != Path("/tmp") else root.iterdir():
            try:
                st = path.lstat()
            except OSError:  # another job's file, gone meanwhile
                continue
            found[path] = (st.st_size, st.st_mtime_ns)
    return found


async def test_ingressnightmare_payloads_are_denied_and_leave_nothing_behind(with_webhook) -> None:
    store = Store()
    web_service(store)
    controller, hook = await with_webhook(store)
    root = controller.layout.root
    before = _files(root, Path("/tmp"))
    pids = children(os.getpid())
    rejected, ignored = hostile_ingresses()
    for obj in rejected:
        answer = await hook.review(obj)
        assert answer["allowed"] is False, obj
        rec = o.record(obj)
        assert isinstance(rec, Ingress)
        parsed = parse_record(rec, f"default/{rec.name}", allow_snippets=False)
        assert answer["status"]["message"] == f"Ingress default/{rec.name}: {getattr(parsed, 'reason', None)}"
    for obj in ignored:  # snippets off, or annotations Portolan never renders: allowed, said so
        answer = await hook.review(obj)
        assert answer["allowed"] is True, obj
        assert answer["warnings"], obj
    for bad in SMUGGLED_UIDS:
        status, text = await hook.post(review(_denied("uid-ok"), uid=bad))  # type: ignore[arg-type]
        assert (status, "request.uid" in text) == (400, True), bad
    for bad in SMUGGLED_OBJECT_UIDS:
        smuggled = _denied("uid-obj")
        smuggled["metadata"]["uid"] = bad
        answer = await hook.review(smuggled)
        assert answer["allowed"] is False, bad
        assert "metadata.uid" in answer["status"]["message"], bad
    # Nothing written: no file appeared or changed under the config dir, no new file in /tmp
    # carries the marker (other jobs share /tmp), no process was started.
    after = _files(root, Path("/tmp"))
    changed = [p for p in after if p.is_relative_to(root) and before.get(p) != after[p]]
    assert changed == []
    for path in set(after) - set(before):
        assert MARK not in path.name.lower(), path
        if path.is_file() and path.stat().st_size < 1 << 20:
            assert MARK not in path.read_bytes().decode(errors="replace").lower(), path
    assert children(os.getpid()) == pids
    assert controller.nginx.running


async def test_oversize_413_malformed_400_tls_only(with_webhook) -> None:
    store = Store()
    web_service(store)
    controller, hook = await with_webhook(store)
    big = json.dumps(review(_denied("big", annotations={"x": "a" * admission.MAX_BODY}))).encode()
    assert (await hook.post(big))[0] == 413

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the bound holds while reading
        for _ in range(admission.MAX_BODY // 65536 + 2):
            yield b" " * 65536

    assert (await hook.post(chunked()))[0] == 413
    malformed = [b"{not json", b"\xff\xfe", b"[]", b"null", b"", b"[" * 200_000 + b"]" * 200_000,
                 json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                             "request": review(None)["request"]}).encode(),
                 json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
                 json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                             "request": []}).encode()]  # fmt: skip
    for body in malformed:
        assert (await hook.post(body))[0] == 400, body[:40]
    # Well-formed reviews of what is no Ingress are denied, not crashed on.
    for obj in ([], "x", {"metadata": "x"}, {"metadata": {"name": 5}}, {"metadata": {"name": "a"}, "spec": []}):
        answer = await hook.review(obj)  # type: ignore[arg-type]
        assert answer["allowed"] is False, obj
    other = review(_denied("pod"))
    other["request"]["resource"] = {"group": "", "version": "v1", "resource": "pods"}
    status, answer = await hook.post(other)
    assert status == 200
    assert answer["response"]["allowed"] is False
    # Only the one path, only POST, only TLS.
    async with hook.session.get(hook.url, ssl=hook.context, server_hostname=SERVICE_NAME) as resp:
        assert resp.status == 405
    async with hook.session.post(hook.url.replace(admission.PATH, "/"), data=b"{}", ssl=hook.context,
                                 server_hostname=SERVICE_NAME) as resp:  # fmt: skip
        assert resp.status == 404
    with pytest.raises(aiohttp.ClientError):
        async with hook.session.post(hook.url.replace("https:", "http:"), data=b"{}") as resp:
            await resp.read()
    assert (await hook.review(_denied("still", annotations=None)))["allowed"] is True  # still serving
    assert controller.webhook is not None
    assert controller.webhook.address == "127.0.0.1"


async def test_a_renewed_certificate_is_served_without_a_restart(with_webhook, webhook_pair, authority,
                                                                  monkeypatch) -> None:  # fmt: skip
    """cert-manager renews the pair in the mounted Secret: new connections get the new one."""
    monkeypatch.setattr(admission, "CERT_CHECK_INTERVAL", 0.05)
    store = Store()
    web_service(store)
    controller, hook = await with_webhook(store)
    assert controller.webhook is not None

    async def names() -> set[str]:
        _, writer = await asyncio.open_connection("127.0.0.1", controller.webhook.port, ssl=hook.context,
                                                  server_hostname=SERVICE_NAME)  # fmt: skip
        cert = writer.get_extra_info("peercert")
        writer.close()
        await writer.wait_closed()
        return {value for _, value in cert["subjectAltName"]}

    assert "renewed.portolan.test" not in await names()
    crt, key = authority.issue(SERVICE_NAME, "renewed.portolan.test")
    _renew(webhook_pair, crt, key)
    await until(lambda: _has(names(), "renewed.portolan.test"))
    assert (await hook.review(_denied("after")))["allowed"] is True


def _renew(pair: tuple[str, str], crt: bytes, key: bytes) -> None:
    Path(pair[1]).write_bytes(key)
    Path(pair[0]).write_bytes(crt)
    os.utime(pair[0], (1, 1))  # a new mtime even within the file system's granularity


async def _has(found: Awaitable[set[str]], name: str) -> bool:
    return name in await found


def test_webhook_flags() -> None:
    args = ["--validating-webhook=:8443", "--validating-webhook-certificate=/c/cert",
            "--validating-webhook-key=/c/key"]  # fmt: skip
    opts = options_from(parser().parse_args(args))
    assert opts.validating_webhook == ("0.0.0.0", 8443)
    assert (opts.validating_webhook_certificate, opts.validating_webhook_key) == ("/c/cert", "/c/key")
    for listen, expected in (("127.0.0.1:9443", ("127.0.0.1", 9443)), ("[::1]:8443", ("::1", 8443))):
        assert options_from(parser().parse_args([f"--validating-webhook={listen}", *args[1:]])).validating_webhook \
            == expected  # fmt: skip
    assert options_from(parser().parse_args([])).validating_webhook is None
    with pytest.raises(SystemExit):
        options_from(parser().parse_args(["--validating-webhook=:8443"]))  # no certificate: the API server needs TLS
    for bad in ("8443", "host:8443", "127.0.0.1:99999"):
        with pytest.raises(SystemExit):
            parser().parse_args([f"--validating-webhook={bad}", *args[1:]])
