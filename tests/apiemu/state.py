"""The emulator's storage: objects, one global resourceVersion, bounded history, watchers.

As in etcd, every write anywhere takes the next resourceVersion. The history keeps the last
``history_window`` write events so watches can resume; resuming from before the oldest
retained event is 410 Gone. Objects are kept as encoded JSON plus the few values selectors
need, so lists and watch events are byte joins, not re-encodings.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from tests.apiemu import objects
from tests.apiemu.errors import StatusError, conflict, gone, not_found
from tests.apiemu.resources import BY_TYPE, RESOURCES, Resource, for_object

STATE_FORMAT = 1


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class Stored:
    """One version of one object."""

    __slots__ = ("body", "fields", "labels", "name", "namespace", "rv")

    def __init__(self, res: Resource, obj: dict[str, Any], body: bytes | None = None) -> None:
        meta = obj["metadata"]
        self.rv = int(meta["resourceVersion"])
        self.body = body if body is not None else encode(obj)
        self.labels: dict[str, str] = meta.get("labels") or {}
        self.fields = res.fields(obj)
        self.namespace: str = meta.get("namespace") or ""
        self.name: str = meta["name"]

    def obj(self) -> dict[str, Any]:
        return json.loads(self.body)

    def with_rv(self, res: Resource, rv: int) -> Stored:
        obj = self.obj()
        obj["metadata"]["resourceVersion"] = str(rv)
        return Stored(res, obj)


class Event:
    """One write, as history keeps it. For DELETED, ``new`` is the last state at the deletion's rv."""

    __slots__ = ("new", "old", "res", "rv", "time", "type")

    def __init__(self, rv: int, res: Resource, etype: str, new: Stored, old: Stored | None, when: float) -> None:
        self.rv, self.res, self.type, self.new, self.old, self.time = rv, res, etype, new, old, when


class WatcherLike:
    """What the state offers events to: a watch."""

    res: Resource

    def offer(self, event: Event) -> None: ...


class State:
    """The emulator's objects, resourceVersions, event history and watchers."""

    def __init__(self, history_window: int = 10_000, namespace_finalize_delay: float = 0.5) -> None:
        self.namespace_finalize_delay = namespace_finalize_delay
        self.rv = 1
        # Watching or listing (Exact) from an rv below this is 410 Gone.
        self.compacted_rv = 1
        self.history: deque[Event] = deque()
        self.history_window = history_window
        self.objects: dict[str, dict[tuple[str, str], Stored]] = {r.key: {} for r in RESOURCES}
        self.watchers: dict[str, set[WatcherLike]] = {r.key: set() for r in RESOURCES}
        self.alloc = objects.ClusterIPAllocator()
        self.last_write_time = 0.0
        self._journal: BinaryIO | None = None

    # ------------------------------------------------------------------ reads

    def get(self, res: Resource, namespace: str, name: str) -> Stored:
        stored = self.objects[res.key].get((namespace, name))
        if stored is None:
            raise not_found(res.plural, name)
        return stored

    def select(
        self, res: Resource, namespace: str | None, match: Callable[[Stored], bool], at: int | None = None
    ) -> list[Stored]:
        """The matching objects (as they were at resourceVersion ``at``, if given), by namespace and name."""
        objs = self.objects[res.key] if at is None else self.at(res, at)
        items = [s for (ns, _), s in objs.items() if (namespace is None or ns == namespace) and match(s)]
        items.sort(key=lambda s: (s.namespace, s.name))
        return items

    def at(self, res: Resource, rv: int) -> dict[tuple[str, str], Stored]:
        """The objects of a resource as they were at ``rv`` (undoing newer history)."""
        if rv < self.compacted_rv:
            raise gone(f"too old resource version: {rv} ({self.compacted_rv})")
        result = dict(self.objects[res.key])
        for event in reversed(self.history):
            if event.rv <= rv:
                break
            if event.res.key != res.key:
                continue
            key = (event.new.namespace, event.new.name)
            if event.type == "ADDED":
                result.pop(key, None)
            elif event.old is not None:
                result[key] = event.old
        return result

    def events_since(self, rv: int, res: Resource) -> list[Event]:
        if rv < self.compacted_rv:
            raise gone(f"too old resource version: {rv} ({self.compacted_rv})")
        found = []
        for event in reversed(self.history):
            if event.rv <= rv:
                break
            if event.res.key == res.key:
                found.append(event)
        found.reverse()
        return found

    # ------------------------------------------------------------------ writes

    def _commit(self, res: Resource, etype: str, obj: dict[str, Any] | None, old: Stored | None) -> Stored:
        self.rv += 1
        if etype == "DELETED":
            assert old is not None
            new = old.with_rv(res, self.rv)
            del self.objects[res.key][(old.namespace, old.name)]
        else:
            assert obj is not None
            obj["metadata"]["resourceVersion"] = str(self.rv)
            new = Stored(res, obj)
            self.objects[res.key][(new.namespace, new.name)] = new
        event = Event(self.rv, res, etype, new, old, time.time())
        self.last_write_time = event.time
        self.history.append(event)
        while len(self.history) > self.history_window:
            self.compacted_rv = self.history.popleft().rv
        if self._journal is not None:
            if etype == "DELETED":
                self._journal_line(
                    {
                        "apiemuDeleted": True,
                        "apiVersion": res.api_version,
                        "kind": res.kind,
                        "metadata": {"namespace": new.namespace, "name": new.name, "resourceVersion": str(self.rv)},
                    }
                )
            else:
                self._journal.write(new.body + b"\n")
                self._journal.flush()
        for watcher in tuple(self.watchers[res.key]):
            watcher.offer(event)
        return new

    def create(self, res: Resource, namespace: str | None, obj: dict[str, Any]) -> Stored:
        objects.prepare_create(res, obj, namespace, self.alloc)
        meta = obj["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        if res.namespaced:
            ns = self.objects[BY_TYPE[("v1", "Namespace")].key].get(("", key[0]))
            if ns is not None and ns.fields.get("status.phase") == "Terminating":
                raise StatusError(
                    403,
                    f'{res.plural} "{meta["name"]}" is forbidden: unable to create new content in namespace '
                    f"{key[0]} because it is being terminated",
                    "Forbidden",
                )
        if key in self.objects[res.key]:
            raise StatusError(
                409,
                f'{res.plural} "{meta["name"]}" already exists',
                "AlreadyExists",
                {"name": meta["name"], "kind": res.plural},
            )
        return self._commit(res, "ADDED", obj, None)

    def update(
        self,
        res: Resource,
        namespace: str,
        name: str,
        new: dict[str, Any],
        *,
        status_only: bool = False,
        expected_rv: str | None = None,
    ) -> Stored:
        current = self.get(res, namespace, name)
        if expected_rv and expected_rv != str(current.rv):
            raise conflict(res.plural, name)
        old_obj = current.obj()
        result = objects.prepare_update(res, new, old_obj, self.alloc, status_only)
        result["metadata"]["resourceVersion"] = old_obj["metadata"]["resourceVersion"]
        if result == old_obj:
            return current  # a no-op write takes no new resourceVersion, as in etcd
        return self._commit(res, "MODIFIED", result, current)

    def delete(self, res: Resource, namespace: str, name: str, preconditions: dict[str, Any] | None = None) -> Stored:
        current = self.get(res, namespace, name)
        if preconditions:
            meta = current.obj()["metadata"]
            if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
                raise StatusError(409, f"Precondition failed: UID in precondition: {preconditions['uid']}", "Conflict")
            rv = preconditions.get("resourceVersion")
            if rv and rv != meta.get("resourceVersion"):
                raise conflict(res.plural, name)
        if res.plural == "namespaces" and not res.group:
            return self._terminate_namespace(res, current)
        return self._commit(res, "DELETED", None, current)

    def _terminate_namespace(self, res: Resource, current: Stored) -> Stored:
        """A deleted Namespace turns Terminating; after ``namespace_finalize_delay`` its
        contents and then itself are removed, as the namespace controller would do. Until
        then, creating objects in it is forbidden but deleting them works (kubectl delete -f
        of a file that holds the namespace first)."""
        obj = current.obj()
        if obj["metadata"].get("deletionTimestamp"):
            return current
        obj["metadata"]["deletionTimestamp"] = objects.now()
        obj.setdefault("status", {})["phase"] = "Terminating"
        stored = self._commit(res, "MODIFIED", obj, current)
        self.schedule_finalize(current.name)
        return stored

    def schedule_finalize(self, namespace: str) -> None:
        if self.namespace_finalize_delay <= 0:
            self.finalize_namespace(namespace)
        else:
            asyncio.get_running_loop().call_later(self.namespace_finalize_delay, self.finalize_namespace, namespace)

    def finalize_namespace(self, namespace: str) -> None:
        ns_res = BY_TYPE[("v1", "Namespace")]
        current = self.objects[ns_res.key].get(("", namespace))
        if current is None:
            return
        for other in RESOURCES:
            if other.namespaced:
                for key in [k for k in self.objects[other.key] if k[0] == namespace]:
                    self._commit(other, "DELETED", None, self.objects[other.key][key])
        self._commit(ns_res, "DELETED", None, current)

    def terminating_namespaces(self) -> list[str]:
        ns_res = BY_TYPE[("v1", "Namespace")]
        return [n for (_, n), s in self.objects[ns_res.key].items() if s.fields.get("status.phase") == "Terminating"]

    def compact(self, force: bool = False) -> None:
        """Forget all history. With ``force``, also move past the current rv, so that even an
        up-to-date client's resume is refused with 410 (as after a long outage)."""
        self.history.clear()
        if force:
            self.rv += 1
            self._journal_line({"apiemuState": STATE_FORMAT, "resourceVersion": self.rv})
        self.compacted_rv = self.rv

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        """Write the whole state (compacting the journal, if one is open on this file)."""
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("wb") as f:
            f.write(encode({"apiemuState": STATE_FORMAT, "resourceVersion": self.rv}) + b"\n")
            for by_key in self.objects.values():
                for stored in by_key.values():
                    f.write(stored.body + b"\n")
        tmp.replace(path)
        if self._journal is not None:
            self._journal.close()
            self._journal = path.open("ab")

    def open_journal(self, path: Path) -> None:
        """Append every write to ``path`` as it is acknowledged, so that even a killed
        emulator comes back with every object and resourceVersion, as etcd would."""
        self.save(path)
        self._journal = path.open("ab")

    def close_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _journal_line(self, record: dict[str, Any]) -> None:
        if self._journal is not None:
            self._journal.write(encode(record) + b"\n")
            self._journal.flush()

    def load(self, path: Path) -> None:
        """Load a saved state (or a fixture in the same format): a header line, then objects,
        deletion markers and resourceVersion advances, later lines winning. History starts
        empty, as a restarted API server's watch cache does: only resumes from the current
        rv work."""
        with path.open("rb") as f:
            header = json.loads(f.readline())
            if header.get("apiemuState") != STATE_FORMAT:
                raise ValueError(f"{path}: not an apiemu state file")
            top = int(header["resourceVersion"])
            for line in f:
                if not line.strip():
                    continue
                obj = json.loads(line)
                if "apiemuState" in obj:
                    top = max(top, int(obj["resourceVersion"]))
                    continue
                res = BY_TYPE[(obj["apiVersion"], obj["kind"])]
                meta = obj["metadata"]
                top = max(top, int(meta["resourceVersion"]))
                if obj.get("apiemuDeleted"):
                    self.objects[res.key].pop((meta.get("namespace") or "", meta["name"]), None)
                    continue
                stored = Stored(res, obj, line.rstrip(b"\n"))
                self.objects[res.key][(stored.namespace, stored.name)] = stored
                if res.plural == "services":
                    for ip in (obj.get("spec") or {}).get("clusterIPs") or ():
                        self.alloc.used.add(ip)
        self.rv = top
        self.compacted_rv = top
        self.history.clear()

    def counts(self) -> dict[str, int]:
        return {key: len(by_key) for key, by_key in self.objects.items()}

    def add_objects(self, objs: Iterable[dict[str, Any]]) -> int:
        """Bulk create (control endpoint): each object is a normal create."""
        n = 0
        for obj in objs:
            self.create(for_object(obj), (obj.get("metadata") or {}).get("namespace"), obj)
            n += 1
        return n
