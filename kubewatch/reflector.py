"""One list-then-watch loop for one kind (and one namespace, when watching a subset).

The loop keeps the last resourceVersion it saw (from objects and from bookmarks) and resumes
the watch from it. Only a 410 Gone throws that away: then it lists again, and the store keeps
serving the old state until the new list is complete and swapped in as one diff. Network
and server errors are retried with capped, jittered exponential backoff while the store
keeps its last state; ``staleness()`` says for how long it has been out of touch.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from kubewatch import gc_control
from kubewatch.backoff import Backoff
from kubewatch.client import ApiClient, decode_list
from kubewatch.errors import ApiError, GoneError, InvalidObject, ProtocolError
from kubewatch.kinds import Kind
from kubewatch.records import Record
from kubewatch.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchTuning:
    """Timeouts, page size and backoff of the list/watch loops."""

    # Smaller than client-go's 500: decoding a page blocks the event loop (the DNS server's
    # too), and at 100,000 pods pages of 200 synced faster than 500 here (the decoded page
    # stays in cache) while stalling the loop for under 10 ms at a time.
    page_size: int = 200
    list_timeout: float = 60.0  # per page
    # Server-side watch duration (timeoutSeconds), drawn at random per watch like client-go
    # so that many clients do not all re-watch at the same instant.
    watch_timeout: tuple[float, float] = (300.0, 600.0)
    # How much longer than timeoutSeconds the client waits before it gives up on a stream.
    read_margin: float = 15.0
    backoff_initial: float = 0.5
    backoff_cap: float = 30.0
    # A watch that ends sooner than this with no events counts as a failure (backoff), so a
    # server that closes every watch at once cannot make the loop spin.
    min_watch_duration: float = 1.0


class Reflector:
    """Keeps one kind in the store in step with the API server: list, then watch, relist on 410."""

    def __init__(
        self,
        client: ApiClient,
        store: Store,
        kind: Kind,
        *,
        namespace: str | None = None,
        only_name: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        tuning: WatchTuning = WatchTuning(),
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_synced: Callable[[Reflector], None] | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.kind = kind
        self.namespace = namespace if kind.namespaced else None
        # Watch one cluster-scoped object by name (a Namespace when only some are served).
        self.only_name = only_name
        self.label_selector = label_selector
        self.field_selector = field_selector
        if only_name is not None:
            name_sel = f"metadata.name={only_name}"
            self.field_selector = f"{field_selector},{name_sel}" if field_selector else name_sel
        self.tuning = tuning
        self._rng = rng or random.Random()
        self._backoff = Backoff(tuning.backoff_initial, tuning.backoff_cap, rng=self._rng)
        self._sleep = sleep
        self._clock = clock
        self._on_synced = on_synced
        self.path = kind.collection_path(self.namespace)
        self.resource_version: str | None = None
        self.synced = False
        self.connected = False
        self.last_contact: float | None = None
        self.last_error = ""
        self.relists = 0
        self.not_served = False  # the last list answered 404 (reported once)
        self._listed_at = float("-inf")

    def __repr__(self) -> str:
        scope = self.namespace or self.only_name or "*"
        return f"Reflector({self.kind.name} {scope})"

    def staleness(self) -> float:
        if self.connected:
            return 0.0
        if self.last_contact is None:
            return float("inf")
        return max(0.0, self._clock() - self.last_contact)

    def _touch(self) -> None:
        self.last_contact = self._clock()

    def _selector_params(self) -> dict[str, str]:
        params = {}
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        if self.field_selector:
            params["fieldSelector"] = self.field_selector
        return params

    async def run(self) -> None:
        while True:
            try:
                if self.resource_version is None:
                    await self._list()
                await self._watch()
            except asyncio.CancelledError:
                self.connected = False
                raise
            except GoneError as exc:
                self.connected = False
                if self.resource_version is None:
                    # The list itself was refused (an expired continue token): back off.
                    await self._fail(exc)
                else:
                    log.info("%r: %s; relisting", self, exc)
                    self.resource_version = None
                    if self._clock() - self._listed_at < self.tuning.min_watch_duration:
                        # Gone again right after a list: a server in that state would
                        # otherwise be relisted from as fast as it can answer.
                        await self._fail(exc)
            except ApiError as exc:
                # A list refused as not found, or (custom resources) as forbidden: the kind is not there.
                if self.resource_version is None and (exc.status == 404 or (exc.status == 403 and self.kind.custom)):
                    await self._not_served(exc)
                else:
                    await self._fail(exc)
            except (ProtocolError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                await self._fail(exc)
            except Exception as exc:  # a bug must not end the loop for good
                log.exception("%r: unexpected error", self)
                await self._fail(exc)

    async def _fail(self, exc: BaseException) -> None:
        self.connected = False
        self.last_error = f"{type(exc).__name__}: {exc}"
        delay = self._backoff.next()
        log.warning("%r: %s; retrying in %.2fs", self, self.last_error, delay)
        await self._sleep(delay)

    async def _not_served(self, exc: ApiError) -> None:
        """The list answered 404 (the API server does not serve this kind: a custom resource whose CRD is
        not installed), or 403 for a custom resource (not granted to us). Reported once, then the kind
        counts as synced and empty, so that the kinds that are served are not held back; the list is
        retried quietly at the backoff cap, and the objects appear once the CRD is installed."""
        self.connected = False
        self.last_error = f"{type(exc).__name__}: {exc}"
        if not self.not_served:
            self.not_served = True
            log.warning("%r: the API server does not serve %s (%s); is its CRD installed, and may we list it? "
                        "Serving none and retrying quietly", self, self.kind.api_version, exc)
        if not self.synced:
            self.store.replace(self.kind, [], namespace=self.namespace, name=self.only_name)
            self._mark_synced()
        await self._sleep(self.tuning.backoff_cap)

    def _mark_synced(self) -> None:
        """The first list is done (or the kind is not served): tell whoever waits for it, once."""
        if not self.synced:
            self.synced = True
            if self._on_synced is not None:
                self._on_synced(self)

    def _convert(self, obj: dict[str, object]) -> Record | None:
        try:
            return self.kind.convert(obj)
        except InvalidObject as exc:
            log.warning("%r: skipping malformed object: %s", self, exc)
            return None

    async def _list(self) -> None:
        params = {"limit": str(self.tuning.page_size), **self._selector_params()}
        records: list[Record] = []
        resource_version = None
        get = self.store.get
        kind = self.kind
        while True:
            raw = await self.client.list_page_raw(self.path, params, self.tuning.list_timeout)
            self._touch()
            # Decoding a page makes tens of thousands of short-lived dicts; with the
            # collector running they get promoted and trigger full collections that walk
            # every record already stored (4 of the 8 seconds of a 220,000-object sync).
            # The pause covers only this synchronous stretch, bounded by the page size,
            # and the page is freed by reference counting before the collector resumes.
            with gc_control.paused():
                page = decode_list(raw, self.path)
                del raw
                meta = page.get("metadata") or {}
                if resource_version is None:
                    resource_version = meta.get("resourceVersion")
                cont = meta.get("continue")
                for obj in page.get("items") or ():
                    rec = self._convert(obj)
                    if rec is None:
                        continue
                    # Keep the stored object when nothing changed: during a relist the old
                    # and new states then share memory instead of doubling it.
                    cur = get(kind, rec.namespace, rec.name)
                    records.append(cur if cur is not None and cur == rec else rec)
                del page, meta
            if not cont:
                break
            params["continue"] = cont
        if not isinstance(resource_version, str) or not resource_version:
            raise ProtocolError(f"list of {self.path} carried no resourceVersion")
        self.store.replace(kind, records, namespace=self.namespace, name=self.only_name)
        self.resource_version = resource_version
        self._listed_at = self._clock()
        self.relists += 1
        self._backoff.reset()
        if self.not_served:
            self.not_served = False
            log.warning("%r: the API server serves %s now", self, self.kind.api_version)
        self._mark_synced()

    async def _watch(self) -> None:
        lo, hi = self.tuning.watch_timeout
        timeout = int(self._rng.uniform(lo, hi)) or 1
        assert self.resource_version is not None
        params = {
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout),
            **self._selector_params(),
        }
        started = self._clock()
        events_seen = 0
        store, kind = self.store, self.kind
        async with self.client.watch(self.path, params, timeout + self.tuning.read_margin) as events:
            self.connected = True
            self._touch()
            try:
                async for event in events:
                    events_seen += 1
                    etype = event["type"]
                    obj = event.get("object")
                    if etype == "ERROR":
                        raise ApiError.from_status(obj)
                    if not isinstance(obj, dict):
                        raise ProtocolError(f"{etype} event without an object")
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if etype != "BOOKMARK":
                        rec = self._convert(obj)
                        if rec is not None:
                            if etype == "DELETED":
                                store.delete(kind, rec.namespace, rec.name)
                            else:
                                store.upsert(kind, rec)
                    if rv:
                        self.resource_version = rv
            finally:
                self.connected = False
                self._touch()
        if events_seen == 0 and self._clock() - started < self.tuning.min_watch_duration:
            await self._fail(ProtocolError("watch closed at once without events"))
        else:
            self._backoff.reset()
