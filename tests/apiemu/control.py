"""/_emu/...: test controls that a real API server does not have.

They let tests force what is otherwise slow or rare: history compaction (410 Gone), dropped
watch connections, bookmarks on demand, token changes, and bulk loading.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from tests.apiemu.api import Settings
from tests.apiemu.errors import StatusError, gone
from tests.apiemu.state import State
from tests.apiemu.watch import error_line


class Control:
    """The emulator's control routes, for tests: state edits, failures to inject, auth changes."""

    def __init__(self, state: State, settings: Settings, auth: dict[str, Any]) -> None:
        self.state = state
        self.settings = settings
        self.auth = auth

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/_emu/state", self.get_state)
        r.add_post("/_emu/compact", self.compact)
        r.add_post("/_emu/gone", self.force_gone)
        r.add_post("/_emu/drop-watches", self.drop_watches)
        r.add_post("/_emu/bookmark", self.bookmark)
        r.add_post("/_emu/config", self.config)
        r.add_post("/_emu/bulk", self.bulk)
        r.add_get("/_emu/wait-watchers", self.wait_watchers)

    def _watchers(self) -> list[Any]:
        return [w for ws in self.state.watchers.values() for w in ws]

    async def get_state(self, request: web.Request) -> web.Response:
        watchers: dict[str, int] = {}
        for key, ws in self.state.watchers.items():
            if ws:
                watchers[key] = len(ws)
        return web.json_response(
            {
                "resourceVersion": self.state.rv,
                "compactedResourceVersion": self.state.compacted_rv,
                "counts": {k: v for k, v in self.state.counts().items() if v},
                "watchers": watchers,
            }
        )

    async def compact(self, request: web.Request) -> web.Response:
        body = await _json(request)
        self.state.compact(force=bool(body.get("force")))
        return web.json_response({"compactedResourceVersion": self.state.compacted_rv})

    async def force_gone(self, request: web.Request) -> web.Response:
        """Compact past the current rv and end every watch: with an ERROR 410 event
        (mode "event", what a real server sends) or by just closing (mode "close"), after
        which the clients' resumes get 410."""
        body = await _json(request)
        mode = body.get("mode", "event")
        self.state.compact(force=True)
        final = error_line(gone(f"too old resource version (compacted at {self.state.compacted_rv})"))
        for w in self._watchers():
            w.close(final if mode == "event" else None)
        return web.json_response({"compactedResourceVersion": self.state.compacted_rv})

    async def drop_watches(self, request: web.Request) -> web.Response:
        watchers = self._watchers()
        for w in watchers:
            w.close()
        return web.json_response({"dropped": len(watchers)})

    async def bookmark(self, request: web.Request) -> web.Response:
        for w in self._watchers():
            w.bookmark(self.state.rv)
        return web.json_response({"resourceVersion": self.state.rv})

    async def config(self, request: web.Request) -> web.Response:
        body = await _json(request)
        if "tokens" in body:
            self.auth["tokens"] = set(body["tokens"]) if body["tokens"] is not None else None
        if "bookmark_interval" in body:
            self.settings.bookmark_interval = float(body["bookmark_interval"])
        if "gone_as_http" in body:
            self.settings.gone_as_http = bool(body["gone_as_http"])
        if "history_window" in body:
            self.state.history_window = int(body["history_window"])
        if "namespace_finalize_delay" in body:
            self.state.namespace_finalize_delay = float(body["namespace_finalize_delay"])
        if "hidden_resources" in body:
            self.settings.hidden_resources = frozenset(body["hidden_resources"])
        if "forbidden_resources" in body:
            self.settings.forbidden_resources = frozenset(body["forbidden_resources"])
        if "default_watch_timeout" in body:
            self.settings.default_watch_timeout = float(body["default_watch_timeout"])
        return web.json_response({"ok": True})

    async def bulk(self, request: web.Request) -> web.Response:
        """Create many objects in one request: a JSON list, or one object per line."""
        raw = await request.read()
        text = raw.strip()
        objs = json.loads(text) if text.startswith(b"[") else [json.loads(line) for line in text.splitlines() if line]
        try:
            n = self.state.add_objects(objs)
        except KeyError as exc:
            raise StatusError(400, f"unknown kind in bulk load: {exc}") from exc
        return web.json_response({"created": n, "resourceVersion": self.state.rv})

    async def wait_watchers(self, request: web.Request) -> web.Response:
        """Long-poll until at least ``count`` watches of ``resource`` (plural) are open."""
        resource = request.query["resource"]
        count = int(request.query.get("count", "1"))
        timeout = float(request.query.get("timeout", "10"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            open_now = sum(len(ws) for key, ws in self.state.watchers.items() if key.split("/", 1)[1] == resource)
            if open_now >= count:
                return web.json_response({"watchers": open_now})
            if loop.time() >= deadline:
                raise StatusError(504, f"{open_now} watches of {resource} open, wanted {count}", "Timeout")
            # Watch registration has no event to wait on; poll the in-memory count briefly.
            await asyncio.sleep(0.01)


async def _json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    return json.loads(raw) if raw.strip() else {}
