"""Watch streams: one Watcher per open watch, fed synchronously by every write."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from kubewatch.selectors import FieldSelector, LabelSelector
from tests.apiemu.errors import StatusError
from tests.apiemu.resources import Resource
from tests.apiemu.state import Event, State, Stored

CLOSE = b""  # queue sentinel: end the stream


def event_line(etype: str, body: bytes) -> bytes:
    return b'{"type":"' + etype.encode() + b'","object":' + body + b"}\n"


def error_line(err: StatusError) -> bytes:
    return event_line("ERROR", json.dumps(err.status()).encode())


class Watcher:
    """One watch request: its filters, and the events queued for it."""

    def __init__(
        self,
        res: Resource,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        bookmarks: bool,
        max_queue: int,
    ) -> None:
        self.res = res
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.bookmarks = bookmarks
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.max_queue = max_queue
        self.closed = False

    def matches(self, stored: Stored) -> bool:
        if self.namespace is not None and stored.namespace != self.namespace:
            return False
        return self.labels.matches(stored.labels) and self.fields.matches(stored.fields)

    def push(self, line: bytes) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= self.max_queue:
            # A consumer this far behind is cut off, as the API server does; it will
            # resume from its last resourceVersion (or relist on 410).
            self.close()
            return
        self.queue.put_nowait(line)

    def close(self, final: bytes | None = None) -> None:
        if self.closed:
            return
        if final:
            self.queue.put_nowait(final)
        self.closed = True
        self.queue.put_nowait(CLOSE)

    def offer(self, event: Event) -> None:
        """Translate one write into what this watch sees, selectors included: an object
        that stops matching is DELETED (old content, new rv); one that starts is ADDED."""
        new_ok = self.matches(event.new)
        if event.type == "ADDED":
            if new_ok:
                self.push(event_line("ADDED", event.new.body))
            return
        old_ok = event.old is not None and self.matches(event.old)
        if event.type == "DELETED":
            if old_ok:
                self.push(event_line("DELETED", event.new.body))
        elif new_ok and old_ok:
            self.push(event_line("MODIFIED", event.new.body))
        elif new_ok:
            self.push(event_line("ADDED", event.new.body))
        elif old_ok and event.old is not None:
            self.push(event_line("DELETED", event.old.with_rv(self.res, event.rv).body))

    def bookmark(self, rv: int) -> None:
        if self.bookmarks:
            body = json.dumps(
                {
                    "kind": self.res.kind,
                    "apiVersion": self.res.api_version,
                    "metadata": {"resourceVersion": str(rv)},
                }
            ).encode()
            self.push(event_line("BOOKMARK", body))


def _register(state: State, watcher: Watcher, start_rv: str, gone_as_http: bool) -> None:
    """Queue what the watch starts with (the current objects, or the history since `start_rv`) and
    register it for live events. Synchronous, so no write can slip between the replayed history
    (or initial state) and the live events."""
    if start_rv in ("", "0"):
        for stored in state.select(watcher.res, watcher.namespace, watcher.matches):
            watcher.push(event_line("ADDED", stored.body))
    else:
        try:
            rv = int(start_rv)
        except ValueError:
            raise StatusError(400, f"invalid resourceVersion {start_rv!r}") from None
        try:
            for event in state.events_since(rv, watcher.res):
                watcher.offer(event)
        except StatusError as err:
            if gone_as_http:
                raise
            # What a real API server does: accept the watch, then send the 410 as an event.
            watcher.close(error_line(err))
    if not watcher.closed:
        state.watchers[watcher.res.key].add(watcher)


def _drain(watcher: Watcher, line: bytes) -> tuple[list[bytes], bool]:
    """`line` and whatever else is queued, coalesced into one chunk (one write per burst), and whether
    the watch is to close after it."""
    stop = line == CLOSE
    chunk = [] if stop else [line]
    while not stop and not watcher.queue.empty():
        more = watcher.queue.get_nowait()
        if more == CLOSE:
            stop = True
        else:
            chunk.append(more)
    return chunk, stop


async def serve_watch(
    request: web.Request,
    state: State,
    watcher: Watcher,
    start_rv: str,
    timeout: float,
    bookmark_interval: float,
    gone_as_http: bool,
) -> web.StreamResponse:
    _register(state, watcher, start_rv, gone_as_http)
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    next_bookmark = loop.time() + bookmark_interval
    try:
        await resp.prepare(request)
        while True:
            now = loop.time()
            if now >= deadline:
                break
            wait = deadline - now
            if watcher.bookmarks:
                wait = min(wait, max(0.0, next_bookmark - now))
            try:
                line = await asyncio.wait_for(watcher.queue.get(), wait)
            except TimeoutError:
                if loop.time() >= next_bookmark:
                    # Nothing is queued, so every write so far has reached this client:
                    # the current rv is a safe resume point.
                    watcher.bookmark(state.rv)
                    next_bookmark = loop.time() + bookmark_interval
                continue
            chunk, stop = _drain(watcher, line)
            if chunk:
                await resp.write(b"".join(chunk))
            if stop:
                break
    except ConnectionResetError:
        pass  # the client went away
    finally:
        watcher.closed = True
        state.watchers[watcher.res.key].discard(watcher)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await resp.write_eof()
    return resp


def parse_watch_params(query: Any) -> tuple[float | None, bool]:
    raw = query.get("timeoutSeconds")
    timeout = None
    if raw:
        try:
            timeout = float(raw)
        except ValueError:
            raise StatusError(400, f"invalid timeoutSeconds {raw!r}") from None
    bookmarks = query.get("allowWatchBookmarks", "").lower() in ("true", "1")
    return timeout, bookmarks
