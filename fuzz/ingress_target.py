"""Ingresses with annotations into the model and the nginx.conf rendered from it: ``classes.owned``,
``modelcache.build`` (each Ingress parsed and validated as the controller parses it) and
``render.Renderer`` with the real templates.

The input is lines: the first three are an Ingress's host (empty: no host), path and pathType, the
rest ``annotation=value`` (names without nginx.ingress.kubernetes.io/; ``\\n``, ``\\r``, ``\\t`` and
``\\0`` in a value are those characters); a line ``---`` starts the next Ingress (up to 6).
Every user field carries the marker: the namespace, Ingress and Service names always do, and
``@M`` anywhere in a host, path or value is replaced by it.

Invariant: building and rendering raise nothing (one Ingress must never break the whole
configuration; a refused one is in ``model.rejected``), the config tokenizes with nginx's rules
(fuzz/nginxconf.py), and the marker (matched without case: hosts are lower-cased) appears only
inside double-quoted tokens, as the templates' ``q`` filter writes them, or in comments, and never
right after a ``$`` (nginx expands variables inside double quotes too). On a
sample, every 1,000th input and every input whose config has a directive sequence not met
before (a cheap stand-in for new coverage), the config passes a real ``nginx -t``.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from pathlib import Path

from fuzz import Failure
from fuzz.k8s import PREFIX, Obj, cluster, put
from fuzz.nginxconf import Token, Unbalanced, tokens
from ingress.certs import self_signed
from ingress.classes import ClassPolicy, owned
from ingress.layout import Layout
from ingress.model import Model, Snapshot
from ingress.modelcache import build
from ingress.nginx import check_config
from ingress.render import Listen, Renderer
from ingress.settings import NginxSettings
from kubewatch import Ingress, IngressClass

MARK = "pwned"
NAMESPACE = f"ns-{MARK}"
SERVICES = (f"svc-{MARK}", f"other-{MARK}")
MAX_INGRESSES = 6
SAMPLE_EVERY = 1000
# The suite's replay (tests/test_fuzz_targets.py) turns nginx -t off: it starts no process; the
# atheris runs and CI's smoke run keep it on.
NGINX_CHECKS = True
ESCAPES = {"\\n": "\n", "\\r": "\r", "\\t": "\t", "\\0": "\0"}


def _value(text: str) -> str:
    for k, v in ESCAPES.items():
        text = text.replace(k, v)
    return text.replace("@M", MARK)


def ingresses(data: bytes) -> list[Obj]:
    """The Ingresses the input describes (see the module docstring)."""
    text = data.decode("utf-8", errors="replace")
    out: list[Obj] = []
    for n, part in enumerate(text.split("\n---\n")[:MAX_INGRESSES]):
        lines = part.split("\n")
        host, path, path_type = [*lines, "", "", ""][:3]
        annotations: dict[str, str] = {}
        for line in lines[3:]:
            key, _, value = line.partition("=")
            annotations[PREFIX + key] = _value(value)
        rule: Obj = {"http": {"paths": [{"path": _value(path), "pathType": path_type or "Prefix", "backend": {
            "service": {"name": SERVICES[n % 2], "port": {"number": 80}}}}]}}
        if host:
            rule["host"] = _value(host)
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {
            "name": f"web{n}-{MARK}", "namespace": NAMESPACE, "creationTimestamp": f"2024-01-0{n + 1}T00:00:00Z",
            "uid": f"uid-{n}", "resourceVersion": "1", "annotations": annotations},
            "spec": {"ingressClassName": "portolan", "rules": [rule]}})
    return out


class _World:
    """What stays across inputs: the cluster, the renderer and its layout, the nginx -t sample."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="portolan-fuzz-ingress-"))
        self.layout = Layout.at(self.root)
        self.layout.prepare()
        self.renderer = Renderer(self.layout, Listen(("127.0.0.1",), 18080, 18443))
        self.renderer.fallback_cert.write_bytes(self_signed().pem)
        self.cert = self_signed()
        self.settings = NginxSettings()
        self.count = 0
        self.shapes: set[frozenset[str]] = set()
        self.nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.checked = 0  # nginx -t runs, for the log

    def model(self, objs: list[Obj]) -> Model | None:
        """The model of the cluster with these Ingresses; None if kubewatch does not convert one of them
        (the store never holds it)."""
        store = cluster(NAMESPACE, SERVICES)
        try:
            put(store, *objs)
        except ValueError:
            return None
        ings = [i for i in store.iter("ingresses") if isinstance(i, Ingress)]
        classes = [c for c in store.iter("ingressclasses") if isinstance(c, IngressClass)]
        ours = owned(ings, classes, ClassPolicy())
        return build(Snapshot(tuple(ours), store, self.settings, self.cert))

    def nginx_t(self, text: str) -> None:
        path = self.root / "candidate.conf"
        path.write_text(text)
        self.checked += 1
        result = asyncio.run(check_config(self.nginx, self.layout, path, timeout=30))
        if not result.ok:
            raise Failure(f"nginx -t refused the rendered config: {result.output}")


_world: _World | None = None


def world() -> _World:
    global _world
    if _world is None:
        _world = _World()
    return _world


def _marked_outside_quotes(toks: list[Token]) -> list[Token]:
    return [t for t in toks if MARK in t.text.lower() and t.quote != '"']


# Inside double quotes nginx still expands variables: user text must not name one ($pwned, ${pwned}).
_VARIABLE = re.compile(r"\$\{?" + MARK, re.I)


def check(data: bytes) -> None:
    objs = ingresses(data)
    w = world()
    w.count += 1
    model = w.model(objs)
    if model is None:
        return  # not even a record kubewatch converts: the store never holds it
    text = w.renderer.render(model).text
    try:
        toks = tokens(text)
    except Unbalanced as e:
        raise Failure(f"the rendered config does not tokenize: {e}") from e
    bad = _marked_outside_quotes(toks)
    if bad:
        raise Failure(f"marker outside double quotes: line {bad[0].line}: {bad[0].text!r}")
    # Which directives the config uses, not how often: a repeated location is not new to nginx.
    named = [t for t in toks if _VARIABLE.search(t.text)]
    if named:
        raise Failure(f"user text names an nginx variable: line {named[0].line}: {named[0].text!r}")
    shape = frozenset(t.text for t in toks if t.quote == "" and t.text.isidentifier())
    new_shape = shape not in w.shapes
    w.shapes.add(shape)
    if NGINX_CHECKS and (new_shape or w.count % SAMPLE_EVERY == 0):
        w.nginx_t(text)
