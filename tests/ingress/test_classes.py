"""Class ownership (table): which Ingresses are ours."""

from __future__ import annotations

import pytest

from ingress.classes import ClassPolicy, is_ours, owned
from kubewatch import Ingress, IngressClass
from tests.ingress import objects as o

OURS = o.record(o.ingress_class("portolan"))
THEIRS = o.record(o.ingress_class("nginx", controller="k8s.io/ingress-nginx"))
OURS_DEFAULT = o.record(o.ingress_class("portolan-default", default=True))
THEIRS_DEFAULT = o.record(o.ingress_class("nginx-default", controller="k8s.io/ingress-nginx", default=True))
LEGACY = "kubernetes.io/ingress.class"


def ing(class_name: str | None = None, annotation: str | None = None) -> Ingress:
    ann = {LEGACY: annotation} if annotation is not None else None
    rec = o.record(o.ingress("i", o.rule("foo.com", o.path("/", "a")), class_name=class_name, annotations=ann))
    assert isinstance(rec, Ingress)
    return rec


CASES = [
    # (description, ingress, classes, policy, ours)
    ("field names our class", ing("portolan"), [OURS], ClassPolicy(), True),
    ("field names their class", ing("nginx"), [OURS, THEIRS], ClassPolicy(), False),
    ("field names an absent class", ing("ghost"), [OURS], ClassPolicy(), False),
    ("field wins over annotation (theirs)", ing("nginx", "portolan"), [OURS, THEIRS], ClassPolicy(), False),
    ("field wins over annotation (ours)", ing("portolan", "nginx"), [OURS, THEIRS], ClassPolicy(), True),
    ("annotation equals --ingress-class", ing(None, "portolan"), [], ClassPolicy(), True),
    ("annotation differs", ing(None, "nginx"), [OURS], ClassPolicy(), False),
    ("annotation with a custom --ingress-class", ing(None, "edge"), [], ClassPolicy(ingress_class="edge"), True),
    ("class-less ignored by default", ing(), [OURS, THEIRS], ClassPolicy(), False),
    ("class-less with the flag", ing(), [], ClassPolicy(watch_without_class=True), True),
    ("class-less, our class is the default", ing(), [OURS_DEFAULT, THEIRS], ClassPolicy(), True),
    ("class-less, their class is the default", ing(), [OURS, THEIRS_DEFAULT], ClassPolicy(), False),
    ("flag does not take another class", ing("nginx"), [THEIRS], ClassPolicy(watch_without_class=True), False),
    ("custom controller class", ing("portolan"), [OURS], ClassPolicy(controller_class="other.dev/x"), False),
    # fuzz/corpus/admission/crash-class-name-list.json: a list there raised TypeError (unhashable)
    ("field is not a name", ing(["portolan"]), [OURS], ClassPolicy(), False),
]


@pytest.mark.parametrize(("desc", "ingress", "classes", "policy", "ours"), CASES, ids=[c[0] for c in CASES])
def test_ownership(desc: str, ingress: Ingress, classes: list[IngressClass], policy: ClassPolicy, ours: bool) -> None:
    assert is_ours(ingress, {c.name: c for c in classes}, policy) is ours


def test_newest_default_class_counts() -> None:
    older = o.ingress_class("old-default", controller="k8s.io/ingress-nginx", default=True)
    older["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    newer = o.ingress_class("new-default", default=True)
    newer["metadata"]["creationTimestamp"] = "2024-06-01T00:00:00Z"
    classes = {c.name: c for c in (o.record(older), o.record(newer))}
    assert is_ours(ing(), classes, ClassPolicy())  # type: ignore[arg-type]


def test_owned_sorted_oldest_first() -> None:
    recs = [
        o.record(o.ingress(name, o.rule("foo.com", o.path("/", "a")), namespace=ns, created=created))
        for name, ns, created in [("b", "x", "2024-02-01T00:00:00Z"), ("a", "y", "2024-01-01T00:00:00Z"),
                                  ("a", "x", "2024-02-01T00:00:00Z"), ("z", "z", "2024-01-01T00:00:00Z")]
    ]  # fmt: skip
    got = owned(recs, [OURS], ClassPolicy())  # type: ignore[arg-type]
    assert [(i.namespace, i.name) for i in got] == [("y", "a"), ("z", "z"), ("x", "a"), ("x", "b")]
