"""The REST surface: routing of /api and /apis paths to list, watch, get, create, update,
patch and delete, including the status subresource."""

from __future__ import annotations

import base64
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from kubewatch.errors import SelectorError
from kubewatch.selectors import FieldSelector, LabelSelector
from tests.apiemu.errors import StatusError, gone
from tests.apiemu.patch import apply_patch
from tests.apiemu.resources import BY_PATH, Resource
from tests.apiemu.state import State, Stored
from tests.apiemu.watch import Watcher, parse_watch_params, serve_watch


@dataclass
class Settings:
    """The emulator's tunables: bookmarks, watch timeouts, how 410 is told, queue and snapshot limits."""

    bookmark_interval: float = 60.0
    default_watch_timeout: float = 1800.0
    gone_as_http: bool = False  # 410 for a too-old watch as HTTP status instead of an ERROR event
    max_watch_queue: int = 100_000
    snapshot_ttl: float = 300.0
    # Resource keys ("group/plural") answered 404, as by a cluster without their CRDs.
    hidden_resources: frozenset[str] = frozenset()
    # Resource keys answered 403, as to a client whose role does not grant them.
    forbidden_resources: frozenset[str] = frozenset()


@dataclass
class Target:
    """What a request path names: a resource, and maybe a namespace, an object and a subresource."""

    res: Resource
    namespace: str | None
    name: str | None
    sub: str | None


def route(path: str) -> Target:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise StatusError(404, f"the server could not find the requested resource ({path})")
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and (group, version, rest[2]) in BY_PATH:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise StatusError(404, f"the server could not find the requested resource ({path})")
    res = BY_PATH.get((group, version, rest[0]))
    if res is None:
        raise StatusError(404, f"the server could not find the requested resource ({path})")
    if namespace is not None and not res.namespaced:
        raise StatusError(404, f"{res.plural} is not namespaced")
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    if sub is not None and (sub != "status" or not res.has_status):
        raise StatusError(404, f"{res.plural} has no subresource {sub!r}")
    return Target(res, namespace, name, sub)


def _json(obj: Any) -> web.Response:
    return web.Response(body=json.dumps(obj).encode(), content_type="application/json")


def _stored(stored: Stored, status: int = 200, write_time: float | None = None) -> web.Response:
    headers = {"X-Apiemu-Write-Time": repr(write_time)} if write_time is not None else None
    return web.Response(status=status, body=stored.body, content_type="application/json", headers=headers)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    ctype = request.content_type or ""
    try:
        if "yaml" in ctype:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise StatusError(400, f"the request body does not decode: {exc}") from exc


class Api:
    """The Kubernetes API routes: list, watch, get, create, update, patch, delete."""

    def __init__(self, state: State, settings: Settings) -> None:
        self.state = state
        self.settings = settings
        # Paged lists read from a snapshot taken at the first page, so that every page is
        # of the same resourceVersion, as etcd guarantees; tokens die with the snapshot.
        self._snapshots: OrderedDict[str, tuple[float, int, list[Stored]]] = OrderedDict()
        self._snapshot_seq = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        target = route(request.path)
        if target.res.key in self.settings.hidden_resources:
            raise StatusError(404, f"the server could not find the requested resource ({request.path})")
        if target.res.key in self.settings.forbidden_resources:
            raise StatusError(403, f"{target.res.plural} is forbidden: the emulator's forbidden_resources")
        method = request.method
        if target.name is None:
            if method == "GET":
                if request.query.get("watch", "").lower() in ("true", "1"):
                    return await self._watch(request, target)
                return self._list(request, target)
            if method == "POST":
                return await self._create(request, target)
            if method == "DELETE":
                return await self._delete_collection(request, target)
        else:
            if method == "GET":
                return _stored(self.state.get(target.res, target.namespace or "", target.name))
            if method == "PUT":
                return await self._replace(request, target)
            if method == "PATCH":
                return await self._patch(request, target)
            if method == "DELETE" and target.sub is None:
                return await self._delete(request, target)
        raise StatusError(405, f"{method} is not allowed on {request.path}")

    # ------------------------------------------------------------------ reads

    @staticmethod
    def _selectors(request: web.Request, res: Resource) -> tuple[LabelSelector, FieldSelector]:
        try:
            labels = LabelSelector.parse(request.query.get("labelSelector"))
            fields = FieldSelector.parse(request.query.get("fieldSelector"))
        except SelectorError as exc:
            raise StatusError(400, str(exc)) from exc
        for field in fields.fields:
            if field not in res.field_names:
                raise StatusError(400, f'field label not supported: "{field}"')
        return labels, fields

    def _list(self, request: web.Request, target: Target) -> web.Response:
        res, q = target.res, request.query
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            raise StatusError(400, f"invalid limit {q.get('limit')!r}") from None
        token = q.get("continue")
        snap_id: str | None = None
        if token:
            snap_id, offset = self._decode_continue(token)
            snap = self._snapshots.get(snap_id)
            if snap is None:
                raise gone(
                    "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter."
                )
            _, rv, items = snap
        else:
            labels, fields = self._selectors(request, res)

            def match(s: Stored) -> bool:
                return labels.matches(s.labels) and fields.matches(s.fields)

            rv, items = self._read_at(request, target, match)
            offset = 0
        page = items[offset : offset + limit] if limit > 0 else items[offset:]
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        end = offset + len(page)
        if end < len(items):
            if snap_id is None:
                snap_id = self._save_snapshot(rv, items)
            meta["continue"] = self._encode_continue(snap_id, end)
            meta["remainingItemCount"] = len(items) - end
        head = json.dumps({"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": meta})
        body = head[:-1].encode() + b',"items":[' + b",".join(s.body for s in page) + b"]}"
        return web.Response(body=body, content_type="application/json")

    def _read_at(self, request: web.Request, target: Target, match: Any) -> tuple[int, list[Stored]]:
        q = request.query
        raw_rv = q.get("resourceVersion", "")
        exact = q.get("resourceVersionMatch") == "Exact"
        state = self.state
        if raw_rv not in ("", "0"):
            try:
                want = int(raw_rv)
            except ValueError:
                raise StatusError(400, f"invalid resourceVersion {raw_rv!r}") from None
            if want > state.rv:
                raise StatusError(504, f"Too large resource version: {want}, current: {state.rv}", "Timeout")
            if exact:
                return want, state.select(target.res, target.namespace, match, at=want)
        return state.rv, state.select(target.res, target.namespace, match)

    def _save_snapshot(self, rv: int, items: list[Stored]) -> str:
        now = time.monotonic()
        while self._snapshots:
            first = next(iter(self._snapshots.values()))
            if now - first[0] < self.settings.snapshot_ttl and len(self._snapshots) < 32:
                break
            self._snapshots.popitem(last=False)
        self._snapshot_seq += 1
        snap_id = f"{id(self)}-{self._snapshot_seq}"
        self._snapshots[snap_id] = (now, rv, items)
        return snap_id

    @staticmethod
    def _encode_continue(snap_id: str, offset: int) -> str:
        return base64.urlsafe_b64encode(json.dumps({"s": snap_id, "o": offset}).encode()).decode()

    @staticmethod
    def _decode_continue(token: str) -> tuple[str, int]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            return str(data["s"]), int(data["o"])
        except (ValueError, KeyError, TypeError):
            raise StatusError(400, "invalid continue token") from None

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        labels, fields = self._selectors(request, target.res)
        timeout, bookmarks = parse_watch_params(request.query)
        watcher = Watcher(target.res, target.namespace, labels, fields, bookmarks, self.settings.max_watch_queue)
        return await serve_watch(
            request,
            self.state,
            watcher,
            request.query.get("resourceVersion", ""),
            timeout if timeout is not None else self.settings.default_watch_timeout,
            self.settings.bookmark_interval,
            self.settings.gone_as_http,
        )

    # ------------------------------------------------------------------ writes

    # Responses to writes carry the time the state stamped at commit, before any watcher was
    # told: the start of the event-to-store latency the benchmarks measure.

    async def _create(self, request: web.Request, target: Target) -> web.Response:
        body = await _body(request)
        stored = self.state.create(target.res, target.namespace, body)
        return _stored(stored, 201, self.state.last_write_time)

    async def _replace(self, request: web.Request, target: Target) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            raise StatusError(400, "the request body is not an object")
        return self._update(target, body, (body.get("metadata") or {}).get("resourceVersion"))

    async def _patch(self, request: web.Request, target: Target) -> web.Response:
        patch = await _body(request)
        assert target.name is not None
        current = self.state.get(target.res, target.namespace or "", target.name)
        expected = None
        if isinstance(patch, dict):
            expected = (patch.get("metadata") or {}).get("resourceVersion")
        patched = apply_patch(request.headers.get("Content-Type", ""), current.obj(), patch)
        if not isinstance(patched, dict):
            raise StatusError(422, "the patch does not leave an object")
        return self._update(target, patched, expected)

    def _update(self, target: Target, new: dict[str, Any], expected_rv: str | None) -> web.Response:
        """PUT and PATCH alike: store ``new`` (only its status on the status subresource)."""
        assert target.name is not None
        stored = self.state.update(
            target.res,
            target.namespace or "",
            target.name,
            new,
            status_only=target.sub == "status",
            expected_rv=expected_rv,
        )
        return _stored(stored, 200, self.state.last_write_time)

    async def _delete(self, request: web.Request, target: Target) -> web.Response:
        options = await _body(request) or {}
        assert target.name is not None
        stored = self.state.delete(target.res, target.namespace or "", target.name, options.get("preconditions"))
        return _stored(stored, 200, self.state.last_write_time)

    async def _delete_collection(self, request: web.Request, target: Target) -> web.Response:
        labels, fields = self._selectors(request, target.res)
        doomed = self.state.select(
            target.res, target.namespace, lambda s: labels.matches(s.labels) and fields.matches(s.fields)
        )
        deleted = [self.state.delete(target.res, s.namespace, s.name) for s in doomed]
        return _json(
            {
                "kind": f"{target.res.kind}List",
                "apiVersion": target.res.api_version,
                "metadata": {"resourceVersion": str(self.state.rv)},
                "items": [s.obj() for s in deleted],
            }
        )
