"""Label and field selectors: parsing and matching, with the API server's grammar.

kubewatch itself pushes selectors to the server as query strings; it parses them too so that
a bad selector fails at configuration time, and so that the manifest source can filter the
same way a server would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from kubewatch.errors import SelectorError

_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY = rf"(?:[a-z0-9](?:[-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}"
_VALUE = rf"(?:{_NAME})?"

_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")
_EQUALITY = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$")
_NUMERIC = re.compile(rf"^({_KEY})\s*([<>])\s*(-?[0-9]+)$")
_VALUE_ONLY = re.compile(rf"^{_VALUE}$")


@dataclass(frozen=True, slots=True)
class Requirement:
    """One requirement of a label selector (key, operator, values)."""

    key: str
    op: str  # exists | !exists | = | != | in | notin | > | <
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.op
        if op == "exists":
            return self.key in labels
        if op == "!exists":
            return self.key not in labels
        value = labels.get(self.key)
        if op in ("=", "in"):
            return value is not None and value in self.values
        if op in ("!=", "notin"):
            return value is None or value not in self.values
        # > and <: both sides must be integers, as in the API server.
        if value is None:
            return False
        try:
            have, want = int(value), int(next(iter(self.values)))
        except ValueError:
            return False
        return have > want if op == ">" else have < want


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside the parentheses of an in/notin set."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced ')' in selector {text!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise SelectorError(f"unbalanced '(' in selector {text!r}")
    parts.append(text[start:])
    return parts


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A parsed label selector: every requirement must match."""

    requirements: tuple[Requirement, ...]
    text: str

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        text = (text or "").strip()
        if not text:
            return cls((), "")
        reqs = []
        for raw in _split_top_level(text):
            term = raw.strip()
            if m := _EXISTS.match(term):
                reqs.append(Requirement(m[2], "!exists" if m[1] else "exists"))
            elif m := _EQUALITY.match(term):
                reqs.append(Requirement(m[1], "!=" if m[2] == "!=" else "=", frozenset({m[3]})))
            elif m := _SET.match(term):
                values = [v.strip() for v in m[3].split(",")]
                bad = [v for v in values if not _VALUE_ONLY.match(v)]
                if bad:
                    raise SelectorError(f"invalid label value {bad[0]!r} in {term!r}")
                reqs.append(Requirement(m[1], m[2], frozenset(values)))
            elif m := _NUMERIC.match(term):
                reqs.append(Requirement(m[1], m[2], frozenset({m[3]})))
            else:
                raise SelectorError(f"invalid label selector term {term!r} in {text!r}")
        return cls(tuple(reqs), text)

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)


def _unescape_field(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=!":
                raise SelectorError(f"invalid escape in field selector value {value!r}")
            out.append(value[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if text[i] == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(text[i])
        i += 1
    parts.append("".join(cur))
    return parts


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """One requirement of a field selector (field = or != value)."""

    field: str
    negate: bool
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        return (fields.get(self.field, "") == self.value) != self.negate


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """A parsed field selector: every requirement must match."""

    requirements: tuple[FieldRequirement, ...]
    text: str

    @classmethod
    def parse(cls, text: str | None) -> FieldSelector:
        text = (text or "").strip()
        if not text:
            return cls((), "")
        reqs = []
        for term in _split_unescaped(text, ","):
            term = term.strip()
            m = re.match(r"^([A-Za-z0-9_.\-/]+)\s*(!=|==|=)(.*)$", term)
            if not m:
                raise SelectorError(f"invalid field selector term {term!r} in {text!r}")
            reqs.append(FieldRequirement(m[1], m[2] == "!=", _unescape_field(m[3].strip())))
        return cls(tuple(reqs), text)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(r.field for r in self.requirements)

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(r.matches(fields) for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)


def object_fields(obj: Mapping[str, object]) -> dict[str, str]:
    """The selectable fields of a raw object: the ones the API server supports for our kinds."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    fields = {
        "metadata.name": str(meta.get("name") or ""),
        "metadata.namespace": str(meta.get("namespace") or ""),
    }
    status = obj.get("status")
    if isinstance(status, Mapping) and "phase" in status:
        fields["status.phase"] = str(status.get("phase") or "")
    spec = obj.get("spec")
    if isinstance(spec, Mapping) and "nodeName" in spec:
        fields["spec.nodeName"] = str(spec.get("nodeName") or "")
    if obj.get("kind") == "Secret":
        fields["type"] = str(obj.get("type") or "")
    return fields
