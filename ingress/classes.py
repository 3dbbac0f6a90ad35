"""Which Ingresses are ours: the IngressClass rules of the Ingress v1 spec and ingress-nginx.

1. ``spec.ingressClassName`` set: ours iff it names an IngressClass whose ``spec.controller``
   is our ``--controller-class``. The field wins; the legacy annotation is not consulted.
2. Else the legacy ``kubernetes.io/ingress.class`` annotation: ours iff it equals
   ``--ingress-class``.
3. Else (class-less): ours with ``--watch-ingress-without-class``, or when the default
   IngressClass (annotation ``ingressclass.kubernetes.io/is-default-class: "true"``) is ours.
   The DefaultIngressClass admission plugin normally fills the field in at creation; this
   covers Ingresses created before the default existed, and manifest runs. With several
   defaults, the newest one counts, as the admission plugin picks since Kubernetes 1.28.

Anything else is another controller's: never rendered, its status never written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kubewatch import Ingress, IngressClass

CLASS_ANNOTATION = "kubernetes.io/ingress.class"


@dataclass(frozen=True, slots=True)
class ClassPolicy:
    """The class flags that decide which Ingresses are ours (--controller-class, --ingress-class, ...)."""

    controller_class: str = "portolan.dev/ingress-controller"
    ingress_class: str = "portolan"
    watch_without_class: bool = False


def default_class(classes: Iterable[IngressClass]) -> IngressClass | None:
    defaults = [c for c in classes if c.is_default]
    if not defaults:
        return None
    return max(defaults, key=lambda c: (c.created, c.name))


def is_ours(ing: Ingress, classes: dict[str, IngressClass], policy: ClassPolicy) -> bool:
    class_name = ing.spec.get("ingressClassName")
    if class_name:
        if not isinstance(class_name, str):
            return False  # no class has such a name (a list there raised TypeError; found by fuzzing)
        ic = classes.get(class_name)
        return ic is not None and ic.controller == policy.controller_class
    annotation = ing.annotations.get(CLASS_ANNOTATION)
    if annotation is not None and annotation != "":
        return annotation == policy.ingress_class
    if policy.watch_without_class:
        return True
    default = default_class(classes.values())
    return default is not None and default.controller == policy.controller_class


def owned(ingresses: Iterable[Ingress], classes: Iterable[IngressClass], policy: ClassPolicy) -> list[Ingress]:
    """Our Ingresses, oldest first (creationTimestamp, then namespace/name): the order in
    which conflicts are settled."""
    by_name = {c.name: c for c in classes}
    return sorted((i for i in ingresses if is_ours(i, by_name, policy)), key=age_key)


def age_key(ing: Ingress) -> tuple[str, str, str]:
    return (ing.created, ing.namespace, ing.name)
