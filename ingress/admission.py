"""The validating admission webhook (``--validating-webhook``): ``kubectl apply`` of an Ingress
the controller would refuse fails at once, with the reason, instead of becoming an Event later.

It answers ``admission.k8s.io/v1`` AdmissionReviews over TLS at ingress-nginx's path
``/networking/v1/ingresses``, inside the controller process, from the controller's own view:

* Ingresses of other classes are allowed (ingress/classes.py decides, as for the model), and
  so are those outside ``--watch-namespace``, which the controller never reads.
* The object is parsed by ``model.parse_record``, the function the model parses every Ingress
  with: whatever it rejects is denied with its message (the field and the rule).
* A path the object would lose to an older Ingress of ours on the same host (the model keeps
  the oldest claim) is denied, naming that Ingress. The rivals are the members of the hosts the
  reconciler last built (its HostCache), brought up to the store with the Ingresses changed
  since (a ``kubectl apply`` of several Ingresses reaches the webhook before the debounced
  reconcile has built the first ones); an UPDATE replaces the object's own old version, and the
  cost is that of the hosts the object names, not of the cluster.
* What the model would only note (an annotation it ignores, snippets switched off) comes back
  as warnings, which kubectl prints.

IngressNightmare (CVE-2025-1974) was ingress-nginx's webhook rendering the reviewed object and
running ``nginx -t`` on it. Here nothing derived from the object is rendered, written to a
file or handed to a process: it is parsed in memory and dropped. Bodies are bounded (the API
server's own 3 MiB limit; 413 above it), what is not an AdmissionReview is a 400, and an
unexpected failure while reviewing denies (the configuration is failurePolicy: Fail anyway).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ingress.classes import ClassPolicy, age_key, is_ours
from ingress.model import CATCH_ALL, Member, Parsed, Rejection, ingress_key, lost_paths, parse_record
from ingress.modelcache import HostCache, touches
from ingress.settings import NginxSettings
from kubewatch import INGRESS_CLASSES, INGRESSES, Ingress, IngressClass, Record, Store
from kubewatch.kinds import get_kind

log = logging.getLogger(__name__)

PATH = "/networking/v1/ingresses"  # ingress-nginx's, which existing webhook configurations name
MAX_BODY = 3 * 1024 * 1024  # the API server refuses larger requests itself
API_VERSION = "admission.k8s.io/v1"
# The API server sends a UUID; anything else is not a review it made, and is not echoed back.
_UID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
MAX_WARNINGS, MAX_WARNING_CHARS = 10, 256  # what the API server passes on to kubectl untruncated
CERT_CHECK_INTERVAL = 30.0  # seconds between looks at the certificate files (cert-manager renews them)
_INGRESS_KIND = get_kind("ingresses")
# A CREATE the API server has not yet given a creationTimestamp sorts after every stored one.
_NEWEST = "9999"


class BadReview(ValueError):
    """The body is not an AdmissionReview we can answer (a 400)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one review: allowed or not, why not, and what kubectl should print."""

    allowed: bool
    message: str = ""
    warnings: tuple[str, ...] = ()


class Reviewer:
    """Judges one Ingress against the controller's view: its store (classes), its settings
    (snippets allowed?) and the hosts its reconciler last built."""

    def __init__(self, store: Store, policy: ClassPolicy, settings: Callable[[], NginxSettings],
                 hosts: HostCache, watch_namespace: str = "") -> None:  # fmt: skip
        self.store = store
        self.policy = policy
        self.watch_namespace = watch_namespace  # --watch-namespace: the others are never served
        self.settings = settings
        self.hosts = hosts
        # Ingresses changed in the store that the last build may not have seen ("ns/name"), and
        # what parse_record made of their records: (record, allow-snippets, result).
        self._pending: dict[str, None] = {}
        self._parsed: dict[str, tuple[Ingress, bool, Parsed | Rejection]] = {}
        # From the start: what the first build has not seen must not be missed. Until the first
        # review the keys only pile up (one entry per Ingress at most); the first forgets those
        # the hosts have by record identity, without parsing them.
        self._unsubscribe: Callable[[], None] | None = self.store.subscribe(self._changed, [INGRESSES])

    @property
    def backlog(self) -> int:
        """Ingresses changed that the last review found the hosts had not caught up with."""
        return len(self._pending)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _changed(self, kind: str, change: str, old: Record | None, new: Record | None) -> None:
        rec = new if new is not None else old
        if isinstance(rec, Ingress):
            self._pending[ingress_key(rec)] = None

    def _ours(self, ing: Ingress, classes: dict[str, IngressClass]) -> bool:
        if self.watch_namespace and ing.namespace != self.watch_namespace:
            return False
        return is_ours(ing, classes, self.policy)

    def _recent(self, classes: dict[str, IngressClass], allow: bool) -> dict[str, Member | None]:
        """The Ingresses changed since the last build saw them, as the store has them now:
        "ns/name" -> the member it is (None: gone, not ours or rejected). Those the build has
        caught up with are forgotten."""
        recent: dict[str, Member | None] = {}
        for key in list(self._pending):
            namespace, name = key.split("/", 1)
            rec = self.store.get(INGRESSES, namespace, name)
            built = self.hosts.member(key)
            member: Member | None = None
            if rec is not built and isinstance(rec, Ingress) and self._ours(rec, classes):
                cached = self._parsed.get(key)
                if cached is None or cached[0] is not rec or cached[1] != allow:
                    cached = self._parsed[key] = (rec, allow, parse_record(rec, key, allow_snippets=allow))
                if not isinstance(cached[2], Rejection):
                    member = (rec, key, cached[2])
            if rec is built or (member is None and built is None):  # nothing the hosts do not know
                del self._pending[key]
                self._parsed.pop(key, None)
                continue
            recent[key] = member
        return recent

    def review(self, operation: str, obj: Any) -> Verdict:
        if operation not in ("CREATE", "UPDATE"):
            return Verdict(True)  # DELETE and CONNECT change no route
        try:
            ing = _INGRESS_KIND.convert(obj)
        except Exception as exc:  # kubewatch's InvalidObject, or worse for a crafted body
            return Verdict(False, f"not an Ingress the controller can read: {exc}")
        assert isinstance(ing, Ingress)
        classes = {c.name: c for c in self.store.iter(INGRESS_CLASSES) if isinstance(c, IngressClass)}
        if not self._ours(ing, classes):
            return Verdict(True)
        key = ingress_key(ing)
        allow = self.settings().allow_snippet_annotations
        parsed = parse_record(ing, key, allow_snippets=allow)
        if isinstance(parsed, Rejection):
            return Verdict(False, f"Ingress {key}: {parsed.reason}")
        warnings = tuple(f"Ingress {key}: {note}"[:MAX_WARNING_CHARS] for note in parsed[1][:MAX_WARNINGS])
        me = (ing if ing.created else ing._replace(created=_NEWEST), key, parsed)
        recent = self._recent(classes, allow)
        losses: list[str] = []
        for host in touches(parsed):
            rivals = [m for m in self.hosts.members_of(host) if m[1] != key and m[1] not in recent]
            rivals += [m for k, m in recent.items() if m is not None and k != key and host in touches(m[2])]
            members = sorted([*rivals, me], key=_age)
            for p, holder in lost_paths(host, members, key):
                on = "any host" if host == CATCH_ALL else host
                losses.append(f"{p.match_type} {p.path} on {on} is already served by the older Ingress {holder}")
        if losses:
            return Verdict(False, f"Ingress {key}: " + "; ".join(losses), warnings)
        return Verdict(True, "", warnings)


def _age(member: Member) -> tuple[str, str, str]:
    return age_key(member[0])


def review_body(body: bytes, reviewer: Reviewer) -> dict[str, Any]:
    """The AdmissionReview answering ``body``; BadReview when it is not one."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadReview(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "AdmissionReview" or doc.get("apiVersion") != API_VERSION:
        raise BadReview(f"not an {API_VERSION} AdmissionReview")
    request = doc.get("request")
    if not isinstance(request, dict):
        raise BadReview("no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not _UID_RE.fullmatch(uid):
        raise BadReview("request.uid is not a UID")
    resource = request.get("resource")
    if not isinstance(resource, dict) or (resource.get("group"), resource.get("resource")) != (
        "networking.k8s.io",
        "ingresses",
    ):
        verdict = Verdict(False, "this webhook reviews networking.k8s.io Ingresses only")
    else:
        operation = request.get("operation")
        try:
            verdict = reviewer.review(operation if isinstance(operation, str) else "", request.get("object"))
        except Exception:  # a bug must not turn into an allowed object, nor stop the server
            log.exception("admission review %s failed", uid)
            verdict = Verdict(False, "the Ingress could not be reviewed (see the controller's log)")
    response: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": verdict.message}
    if verdict.warnings:
        response["warnings"] = list(verdict.warnings)
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def server_context(certificate: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    return context


class AdmissionServer:
    """The webhook's HTTPS listener: one route, bounded bodies, TLS only."""

    def __init__(self, address: str, port: int, certificate: str, key: str, reviewer: Reviewer) -> None:
        self.address = address
        self.port = port
        self.certificate = certificate
        self.key = key
        self.reviewer = reviewer
        self.reviews = 0  # answered, for tests and the log
        self._runner: web.AppRunner | None = None
        self._context: ssl.SSLContext | None = None
        self._stamp: tuple[float, float] = (0.0, 0.0)
        self._watch: asyncio.Task[None] | None = None

    async def _review(self, request: web.Request) -> web.Response:
        # Refused before reading: a declared length over the bound costs nothing.
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413, text="request body too large\n")
        try:
            body = await request.read()  # aiohttp stops at client_max_size too (chunked bodies)
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="request body too large\n")
        try:
            answer = review_body(body, self.reviewer)
        except BadReview as exc:
            return web.Response(status=400, text=f"{exc}\n")
        self.reviews += 1
        return web.json_response(answer)

    def _stamps(self) -> tuple[float, float]:
        return (os.stat(self.certificate).st_mtime, os.stat(self.key).st_mtime)

    async def start(self) -> None:
        self._context = server_context(self.certificate, self.key)
        self._stamp = self._stamps()
        app = web.Application(client_max_size=MAX_BODY)
        app.add_routes([web.post(PATH, self._review)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address, self.port, ssl_context=self._context)
        await site.start()
        if self.port == 0 and self._runner.addresses:
            self.port = int(self._runner.addresses[0][1])
        self._watch = asyncio.create_task(self._watch_certificate(), name="ingress webhook certificate")
        log.info("validating webhook on https://%s:%d%s", self.address, self.port, PATH)

    async def _watch_certificate(self) -> None:
        """Loads a renewed pair into the context new connections use (cert-manager rotates it)."""
        assert self._context is not None
        while True:
            await asyncio.sleep(CERT_CHECK_INTERVAL)
            try:
                stamp = self._stamps()
                if stamp != self._stamp:
                    self._context.load_cert_chain(self.certificate, self.key)
                    self._stamp = stamp
                    log.info("validating webhook: certificate reloaded")
            except (OSError, ssl.SSLError) as exc:  # half-written pair: the old one serves on
                log.warning("validating webhook: certificate not reloaded: %s", exc)

    async def stop(self) -> None:
        self.reviewer.stop()
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
