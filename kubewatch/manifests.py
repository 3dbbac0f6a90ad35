"""A source that feeds the store from YAML/JSON manifest files instead of an API server.

Point it at a file or a directory (``*.yaml``, ``*.yml``, ``*.json``; not recursive unless
asked, like ``kubectl apply -f``). Files may hold several documents and ``kind: List`` (or
``<Kind>List``) wrappers. Objects of kinds kubewatch does not know (Deployments, ...) are
skipped.

Reloads are whole: every file is re-read when any of them changes, and the new state
replaces the old only if every document parses. A malformed document keeps the previous
state in the store and is reported as "FILE: document N: problem" (N counts from 0, as
yaml.safe_load_all yields them). Partial application would let a half-edited directory
publish, say, a Service without its EndpointSlices.

Without a cluster nobody allocates ClusterIPs or creates Namespaces, so by default a
Service without spec.clusterIP gets a stable address derived from its name inside
``service_cidr``, and every namespace that holds an object exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from kubewatch.api_source import WatchSpec
from kubewatch.errors import InvalidObject, ManifestError
from kubewatch.kinds import BY_TYPE, KINDS, SERVICES, Kind
from kubewatch.records import Namespace, Record
from kubewatch.selectors import FieldSelector, LabelSelector, object_fields
from kubewatch.store import Store

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Fingerprint = tuple[tuple[str, int, int, int], ...]


class _Filter:
    def __init__(self, spec: WatchSpec) -> None:
        self.namespaces = frozenset(spec.namespaces)
        self.labels = LabelSelector.parse(spec.label_selector)
        self.fields = FieldSelector.parse(spec.field_selector)

    def admits(self, kind: Kind, obj: dict[str, Any], rec: Record) -> bool:
        if self.namespaces:
            scope = rec.namespace if kind.namespaced else rec.name
            if scope not in self.namespaces:
                return False
        meta = obj.get("metadata") or {}
        if self.labels and not self.labels.matches(meta.get("labels") or {}):
            return False
        if self.fields:
            fields = object_fields(obj)
            fields["metadata.namespace"] = rec.namespace
            if not self.fields.matches(fields):
                return False
        return True


class ManifestSource:
    """Fills the store from a directory of manifests, reread when the files change."""

    def __init__(
        self,
        store: Store,
        paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        *,
        specs: Iterable[WatchSpec | str] | None = None,
        interval: float = 2.0,
        recursive: bool = False,
        implicit_namespaces: bool = True,
        service_cidr: str | None = "10.96.0.0/12",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        spec_list = [WatchSpec(s) if isinstance(s, str) else s for s in (specs or list(KINDS))]
        self._filters = {spec.validate().name: _Filter(spec) for spec in spec_list}
        self.kinds = frozenset(self._filters)
        self.interval = interval
        self.recursive = recursive
        self.implicit_namespaces = implicit_namespaces
        self._cidr = ipaddress.ip_network(service_cidr) if service_cidr else None
        self._assigned: dict[tuple[str, str], str] = {}
        self._taken: set[str] = set()
        self._sleep = sleep
        self._clock = clock
        self._fingerprint: Fingerprint | None = None
        self._last_good: float | None = None
        self.errors: list[ManifestError] = []  # of the last load; empty when the store matches the files
        self.loads = 0
        self._task: asyncio.Task[None] | None = None
        self._registered = False

    # ------------------------------------------------------------------ files

    def files(self) -> list[Path]:
        found: list[Path] = []
        for p in self.paths:
            if p.is_dir():
                walker = p.rglob("*") if self.recursive else p.iterdir()
                found.extend(sorted(f for f in walker if f.is_file() and f.suffix in SUFFIXES))
            else:
                found.append(p)
        return found

    def _fingerprint_of(self, files: list[Path]) -> Fingerprint:
        stamps = []
        for f in files:
            try:
                st = f.stat()
                stamps.append((str(f), st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                stamps.append((str(f), -1, -1, -1))
        return tuple(stamps)

    # ------------------------------------------------------------------ loading

    def check(self) -> bool:
        """Reload if any file was added, removed or changed. True if the store was updated."""
        files = self.files()
        fingerprint = self._fingerprint_of(files)
        if fingerprint == self._fingerprint:
            return False
        # The listing and stamps just taken are the ones the load reads by: no second pass.
        return self._load(files, fingerprint)

    def load(self) -> bool:
        """Read everything and, if it all parses, make the store match it."""
        files = self.files()
        return self._load(files, self._fingerprint_of(files))

    def _load(self, files: list[Path], fingerprint: Fingerprint) -> bool:
        if not self._registered:
            # The first load (directly or from start()) makes the store wait for our kinds.
            self.store.add_source(self)
            self._registered = True
        errors: list[ManifestError] = []
        records: dict[str, dict[tuple[str, str], Record]] = {name: {} for name in self.kinds}
        for f in files:
            try:
                docs = self._documents(f)
            except ManifestError as exc:
                errors.append(exc)
                continue
            for index, doc in docs:
                try:
                    self._take(doc, records)
                except InvalidObject as exc:
                    errors.append(ManifestError(str(f), index, str(exc)))
        self._fingerprint = fingerprint
        if errors:
            self.errors = errors
            for err in errors:
                log.error("manifests: %s (keeping the previous state)", err)
            return False
        if self.implicit_namespaces and "namespaces" in self.kinds:
            self._add_implicit_namespaces(records)
        for name, by_key in records.items():
            self.store.replace(name, by_key.values())
            self.store.mark_synced(name)
        self.errors = []
        self._last_good = self._clock()
        self.loads += 1
        return True

    def _documents(self, f: Path) -> list[tuple[int, Any]]:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(str(f), None, f"cannot read: {exc}") from exc
        if f.suffix == ".json":
            try:
                return [(0, json.loads(text))]
            except ValueError as exc:
                raise ManifestError(str(f), 0, f"invalid JSON: {exc}") from exc
        docs: list[tuple[int, Any]] = []
        try:
            for index, doc in enumerate(yaml.load_all(text, Loader=_Loader)):
                docs.append((index, doc))
        except yaml.YAMLError as exc:
            # The documents before the broken one parsed; the broken one is the next index.
            raise ManifestError(str(f), len(docs), f"invalid YAML: {exc}") from exc
        return docs

    def _take(self, doc: Any, records: dict[str, dict[tuple[str, str], Record]], where: str = "") -> None:
        if doc is None:
            return  # an empty document between two "---"
        if not isinstance(doc, dict):
            raise InvalidObject(f"{where}not a mapping")
        kind_name = doc.get("kind")
        api_version = doc.get("apiVersion")
        if not isinstance(kind_name, str) or not isinstance(api_version, str):
            raise InvalidObject(f"{where}apiVersion and kind are required")
        if kind_name.endswith("List") and "items" in doc:
            items = doc["items"]
            if not isinstance(items, list):
                raise InvalidObject(f"{where}items is not a list")
            for i, item in enumerate(items or ()):
                self._take(item, records, f"{where}items[{i}]: ")
            return
        kind = BY_TYPE.get((api_version, kind_name))
        if kind is None or kind.name not in self.kinds:
            return  # a kind we do not serve (Deployment, ...): not an error
        if kind is SERVICES:
            doc = self._with_cluster_ip(doc)
        try:
            rec = kind.convert(doc)
        except InvalidObject as exc:
            raise InvalidObject(f"{where}{exc}") from exc
        if not self._filters[kind.name].admits(kind, doc, rec):
            return
        key = (rec.namespace, rec.name)
        if key in records[kind.name]:
            log.warning("manifests: %s %s/%s is defined twice; the later one wins", kind.kind, *key)
        records[kind.name][key] = rec

    def _with_cluster_ip(self, doc: dict[str, Any]) -> dict[str, Any]:
        spec = doc.get("spec")
        if self._cidr is None or not isinstance(spec, dict):
            return doc
        if spec.get("clusterIP") or spec.get("clusterIPs") or spec.get("type") == "ExternalName":
            return doc
        meta = doc.get("metadata") or {}
        if not isinstance(meta, dict):
            return doc  # the conversion refuses it, naming metadata (an AttributeError here was a crash)
        key = (str(meta.get("namespace") or "default"), str(meta.get("name")))
        ip = self._assigned.get(key)
        if ip is None:
            ip = self._allocate(key)
            self._assigned[key] = ip
            self._taken.add(ip)
        return {**doc, "spec": {**spec, "clusterIP": ip, "clusterIPs": [ip]}}

    def _allocate(self, key: tuple[str, str]) -> str:
        # Hash the name into the range, probing past addresses already handed out: the same
        # manifests give the same IPs on every run.
        assert self._cidr is not None
        size = self._cidr.num_addresses
        start = int.from_bytes(hashlib.sha256("/".join(key).encode()).digest()[:8], "big")
        for probe in range(size):
            offset = (start + probe) % (size - 2) + 1  # skip the network and broadcast ends
            ip = str(self._cidr.network_address + offset)
            if ip not in self._taken:
                return ip
        raise InvalidObject(f"service CIDR {self._cidr} is full")

    def _add_implicit_namespaces(self, records: dict[str, dict[tuple[str, str], Record]]) -> None:
        namespaces = records["namespaces"]
        wanted = {"default"}
        for name, by_key in records.items():
            if KINDS[name].namespaced:
                wanted.update(ns for ns, _ in by_key)
        ns_filter = self._filters["namespaces"]
        for ns in sorted(wanted):
            # (A synthesised namespace has no labels to match.)
            if ("", ns) not in namespaces and (not ns_filter.namespaces or ns in ns_filter.namespaces) \
                    and not ns_filter.labels:
                namespaces[("", ns)] = Namespace(ns, {})

    # ------------------------------------------------------------------ lifecycle

    def staleness(self, kind: str) -> float:
        """0 while the store matches the files; while they are broken, time since the last good load."""
        if self._last_good is None:
            return float("inf")
        if not self.errors:
            return 0.0
        return max(0.0, self._clock() - self._last_good)

    async def run(self) -> None:
        while True:
            await self._sleep(self.interval)
            try:
                self.check()
            except Exception:  # keep polling whatever happened to one pass
                log.exception("manifests: reload failed")

    async def start(self) -> None:
        self.load()
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="kubewatch manifests")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.store.remove_source(self)
        self._registered = False

    async def __aenter__(self) -> ManifestSource:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
