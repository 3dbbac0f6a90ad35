"""Building models straight from object dicts, for the pure tests."""

from __future__ import annotations

from collections.abc import Mapping

from ingress.certs import CertPair, self_signed
from ingress.classes import ClassPolicy, owned
from ingress.model import Model, Snapshot
from ingress.modelcache import build
from ingress.settings import NginxSettings
from kubewatch import Ingress, IngressClass, Store
from tests.ingress import objects as o
from tests.ingress.objects import A
from tests.ingress.routing import SERVICES, standard_objects

_DEFAULT: list[CertPair] = []


def default_cert() -> CertPair:
    if not _DEFAULT:
        _DEFAULT.append(self_signed())
    return _DEFAULT[0]


def fake_addresses() -> dict[str, tuple[str, int]]:
    return {name: (f"127.0.0.{10 + i}", 8080) for i, name in enumerate(SERVICES)}


def store_of(*objs: o.Obj) -> Store:
    store = Store()
    o.put(store, *objs)
    return store


def snapshot(store: Store, policy: ClassPolicy | None = None, settings: NginxSettings | None = None) -> Snapshot:
    ingresses = [i for i in store.iter("ingresses") if isinstance(i, Ingress)]
    classes = [c for c in store.iter("ingressclasses") if isinstance(c, IngressClass)]
    ours = owned(ingresses, classes, policy or ClassPolicy())
    return Snapshot(tuple(ours), store, settings or NginxSettings(), default_cert())


def model_of(*ingresses: o.Obj, policy: ClassPolicy | None = None, extra: tuple[o.Obj, ...] = ()) -> Model:
    store = store_of(*standard_objects(fake_addresses()), *extra, *ingresses)
    return build(snapshot(store, policy))


def canary_model(extra: Mapping[str, str | None]) -> Model:
    """foo.com "/" served by Service a (Ingress "main", the older) plus a canary Ingress sending it
    to Service b, annotated canary: "true" and ``extra`` (names without the prefix; None: left out)."""
    annotations = {A + "canary": "true", **{A + k: v for k, v in extra.items() if v is not None}}
    return model_of(
        o.ingress("main", o.rule("foo.com", o.path("/", "a")), created="2024-01-01T00:00:00Z"),
        o.ingress("canary", o.rule("foo.com", o.path("/", "b")), created="2024-01-02T00:00:00Z",
                  annotations=annotations),
    )  # fmt: skip
