"""Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and the part of
strategic merge patch that kubectl's client-side apply produces for our kinds."""

from __future__ import annotations

import copy
from typing import Any

from tests.apiemu.errors import StatusError

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# List fields merged element-by-element under strategic merge patch, with their merge key.
# Everything else (EndpointSlice endpoints, Ingress rules, ...) is atomic: replaced whole.
_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "ports": ("port", "containerPort"),  # Service ports / container ports
    "containers": ("name",),
    "initContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "conditions": ("type",),
    "imagePullSecrets": ("name",),
    "ownerReferences": ("uid",),
    "hostAliases": ("ip",),
}


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_key(field: str, items: list[Any]) -> str | None:
    for key in _MERGE_KEYS.get(field, ()):
        if items and all(isinstance(i, dict) and (key in i or i.get("$patch") == "delete") for i in items):
            return key
    return None


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    result = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            _delete_from_list(result, key.split("/", 1)[1], value)
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, list) and (merge_key := _merge_key(key, value)) is not None:
            result[key] = _merge_list(result.get(key), value, merge_key, patch.get(f"$setElementOrder/{key}"))
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _delete_from_list(result: dict[str, Any], field: str, values: Any) -> None:
    """`$deleteFromPrimitiveList/FIELD`: drop these values from the list FIELD."""
    if isinstance(result.get(field), list):
        result[field] = [v for v in result[field] if v not in values]


def _merge_list(current: Any, patch: list[Any], key: str, order: Any) -> list[Any]:
    items = [copy.deepcopy(i) for i in current] if isinstance(current, list) else []
    for element in patch:
        match = next(
            (i for i, cur in enumerate(items) if isinstance(cur, dict) and cur.get(key) == element.get(key)),
            None,
        )
        if element.get("$patch") == "delete":
            if match is not None:
                del items[match]
        elif match is not None:
            items[match] = strategic_merge_patch(items[match], element)
        else:
            items.append(strategic_merge_patch({}, element))
    if isinstance(order, list):
        rank = {o.get(key): i for i, o in enumerate(order) if isinstance(o, dict)}
        items.sort(key=lambda i: rank.get(i.get(key), len(rank)))
    return items


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise StatusError(422, f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[int(part)]
        elif isinstance(doc, dict):
            doc = doc[part]
        else:
            raise KeyError(part)
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise StatusError(400, "a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        try:
            doc = _apply_op(doc, op)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise StatusError(422, f"the JSON patch operation {op!r} cannot be applied: {exc}") from exc
    return doc


def _apply_op(doc: Any, op: dict[str, Any]) -> Any:
    kind = op["op"]
    parts = _pointer(op["path"])
    if kind == "test":
        if _resolve(doc, parts) != op["value"]:
            raise ValueError("test failed")
        return doc
    if kind in ("move", "copy"):
        value = copy.deepcopy(_resolve(doc, _pointer(op["from"])))
        if kind == "move":
            doc = _apply_op(doc, {"op": "remove", "path": op["from"]})
        return _apply_op(doc, {"op": "add", "path": op["path"], "value": value})
    if not parts:
        if kind == "remove":
            return None
        return copy.deepcopy(op["value"])
    parent = _resolve(doc, parts[:-1])
    last = parts[-1]
    if kind == "remove":
        if isinstance(parent, list):
            del parent[int(last)]
        else:
            del parent[last]
    elif kind in ("add", "replace"):
        _put(parent, last, kind, copy.deepcopy(op["value"]))
    else:
        raise ValueError(f"unknown op {kind!r}")
    return doc


def _put(parent: Any, last: str, kind: str, value: Any) -> None:
    """`add` or `replace` `value` at `last` of `parent` (a list index, "-" for the end, or a key)."""
    if isinstance(parent, list):
        if kind == "add":
            parent.insert(len(parent) if last == "-" else int(last), value)
        else:
            parent[int(last)] = value
        return
    if kind == "replace" and last not in parent:
        raise KeyError(last)
    parent[last] = value


def apply_patch(content_type: str, target: dict[str, Any], patch: Any) -> Any:
    ctype = content_type.split(";", 1)[0].strip()
    if ctype == MERGE:
        return merge_patch(target, patch)
    if ctype == STRATEGIC:
        return strategic_merge_patch(target, patch)
    if ctype == JSON_PATCH:
        return json_patch(target, patch)
    raise StatusError(415, f"the patch type {ctype!r} is not supported", "UnsupportedMediaType")
