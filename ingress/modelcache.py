"""The model built incrementally: a change costs the hosts it touches, not the cluster.

``build`` turns a snapshot into a Model (ingress/model.py says what a host is made of); a
``HostCache`` kept across reconciles remembers what the last build was made of: its Ingresses
by record identity (the store replaces a record on every change), their age order, which of
them touch each host, each host's built Server, and each host's share of the whole model
(upstreams, certificates, notes, http-level needs) counted per host. A build then parses and
builds again only the hosts of the Ingresses that changed, and checks the others' look-ups only
when Services or Secrets changed. Same input, same model, cache or not: a test drives random
changes through one cache and compares every model with a fresh build's.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ingress.certs import CertPair
from ingress.classes import age_key
from ingress.endpoints import ready_endpoints
from ingress.l4 import build_streams
from ingress.model import (
    CATCH_ALL,
    Extras,
    HostBuilt,
    Lookup,
    Member,
    Model,
    Parsed,
    Rejection,
    Server,
    Snapshot,
    Upstream,
    build_host,
    host_order,
    ingress_key,
    parse_ingress,
)
from ingress.settings import NginxSettings
from kubewatch import EndpointSlice, GenericObject, Ingress, Service, ServicePort


def build(snapshot: Snapshot, exclude: Iterable[str] = (), cache: HostCache | None = None) -> Model:
    """The model of ``snapshot`` without the Ingresses named in ``exclude`` ("ns/name").

    Each host is built from the Ingresses naming it alone; with a ``cache`` (kept across
    reconciles), only the hosts of Ingresses that changed are built again, and the others keep
    their Server while the Services and Secrets they looked up are the same objects: the cost
    of a change follows the change. Same input, same model, cache or not."""
    return (cache if cache is not None else HostCache()).build(snapshot, frozenset(exclude))




def _drop(ordered: list[Any], item: tuple[Any, str]) -> None:
    """Remove ``item`` from a sorted list."""
    at = bisect.bisect_left(ordered, item)
    if at < len(ordered) and ordered[at] == item:
        del ordered[at]


def same_but_status(old: Ingress | GenericObject, new: Ingress | GenericObject) -> bool:
    """Whether two versions of an object differ in status (and resourceVersion) only: what the
    controller's own status writes change, which no configuration depends on."""
    return (old.uid, old.created, old.annotations, old.labels, old.spec) == (
        new.uid, new.created, new.annotations, new.labels, new.spec)  # fmt: skip


def touches(parsed: Parsed) -> list[str]:
    """The hosts an Ingress contributes to: its rules' (canaries too), or the catch-all."""
    ann, _, spec = parsed
    hosts = dict.fromkeys(rule.host or CATCH_ALL for rule in spec.rules)
    if not spec.rules and not ann.canary:
        hosts[CATCH_ALL] = None
    return list(hosts)



class _Tally:
    """What each host adds to the whole model (upstreams, certificates, notes, http-level
    needs), counted per host: a host built again replaces only its own share."""

    def __init__(self) -> None:
        self.counted: dict[str, HostBuilt] = {}
        self._upstreams: dict[str, list[Any]] = {}  # name -> [hosts using it, Upstream, recipe or None]
        self._certs: dict[str, list[Any]] = {}  # digest -> [hosts using it, CertPair]
        self._noted: dict[str, tuple[str, ...]] = {}  # host -> its notes, for hosts with some
        self._extras: dict[str, Extras] = {}  # host -> its needs, for hosts with some
        self.changed = True

    def count(self, host: str, built: HostBuilt | None) -> None:
        old = self.counted.pop(host, None)
        self.changed = True
        if old is not None:
            for name in old.upstreams:
                entry = self._upstreams[name]
                entry[0] -= 1
                if not entry[0]:
                    del self._upstreams[name]
            if old.cert is not None:
                entry = self._certs[old.cert.digest]
                entry[0] -= 1
                if not entry[0]:
                    del self._certs[old.cert.digest]
            self._noted.pop(host, None)
            self._extras.pop(host, None)
        if built is None:
            return
        self.counted[host] = built
        for name, upstream in built.upstreams.items():
            entry = self._upstreams.setdefault(name, [0, upstream, None])
            entry[0] += 1
            entry[1], entry[2] = upstream, built.recipes.get(name)  # the newest build's view
        if built.cert is not None:
            self._certs.setdefault(built.cert.digest, [0, built.cert])[0] += 1
        if built.notes:
            self._noted[host] = built.notes
        if built.extras is not None:
            self._extras[host] = built.extras

    def upstreams(self) -> dict[str, Upstream]:
        return {name: entry[1] for name, entry in self._upstreams.items()}

    def recipes(self) -> dict[str, tuple[Service, ServicePort]]:
        return {name: entry[2] for name, entry in self._upstreams.items() if entry[2] is not None}

    def certs(self) -> dict[str, CertPair]:
        return {digest: entry[1] for digest, entry in self._certs.items()}

    def notes(self, hostlist: list[str]) -> list[str]:
        noted = self._noted
        if len(noted) < 64:
            return [n for host in sorted(noted, key=host_order) for n in noted[host]]
        return [n for host in hostlist if host in noted for n in noted[host]]

    def extras(self) -> Extras:
        return Extras.union(self._extras[h] for h in sorted(self._extras))



# A Service port's ready endpoints: (the Service, its slices, the endpoints, their notes).
_Ready = tuple[Service, tuple[EndpointSlice, ...], tuple[tuple[str, int], ...], tuple[str, ...]]


class HostCache:
    """Hosts built by earlier reconciles, and the endpoints of Service ports, reused while the
    objects they came from are the same objects (the store replaces a record on every change)."""

    def __init__(self) -> None:
        self._hosts: dict[str, HostBuilt] = {}
        self._settings: NginxSettings | None = None
        self._endpoints: dict[tuple[int, str, int], _Ready] = {}
        self.built = 0  # hosts built (not reused), for tests and the log
        self._generations: tuple[int, int, int] | None = None
        self._stable = False
        # What the last build was made of: its Ingresses (parsed) by "ns/name", which of them
        # touch each host, their age order, the hosts in server order.
        self._members: dict[str, tuple[Ingress, Parsed | Rejection]] = {}
        self._host_keys: dict[str, set[str]] = {}
        self._by_id: dict[int, str] = {}  # id of the store's record of each member -> "ns/name"
        self._oid: dict[str, int] = {}  # the other way round
        # The store's record of a member when it is not the member's own: a newer version that
        # differs only in status (kept alive, so its id cannot be reused while it is mapped).
        self._live: dict[str, Ingress] = {}
        self._order: tuple[tuple[str, ...], tuple[Rejection, ...], tuple[str, ...]] = ((), (), ())
        self._aged: list[tuple[tuple[str, str, str], str]] = []  # (age_key, "ns/name"), sorted
        self._hostlist: list[str] = []
        self._hostorder: list[tuple[tuple[int, str], str]] = []  # (host_order, host), sorted
        self._tally = _Tally()  # what the hosts contribute to the whole model
        self._servers: tuple[Server, ...] = ()
        self._for: NginxSettings | None = None  # the settings that state was built with

    def build(self, snapshot: Snapshot, excluded: frozenset[str]) -> Model:
        lookup = snapshot.lookup
        self.begin(lookup)
        settings = self.intern(snapshot.settings)
        fresh = settings is not self._for
        if fresh:  # every parse and every host depends on them
            self._members, self._host_keys, self._by_id, self._for = {}, {}, {}, settings
            self._oid, self._live = {}, {}
            self._aged, self._hostorder, self._tally = [], [], _Tally()
        dirty, reordered = self._update_members(snapshot, excluded)
        if reordered or fresh:
            self._order = self._age_order()
        served, rejected, ann_notes = self._order
        hosts = self._hosts
        tally = self._tally
        for host in dirty if self._stable else dirty | set(self._hostlist):
            built = hosts.get(host)
            if host not in self._host_keys and host != CATCH_ALL:  # no Ingress names it any more
                hosts.pop(host, None)
                tally.count(host, None)
            elif built is None or host in dirty or built.settings is not settings or not self._stable:
                built = self.host(host, self._group(host), lookup, settings)
                if tally.counted.get(host) is not built:
                    tally.count(host, built)
        if tally.changed or reordered or fresh:
            self._servers = tuple(hosts[h].server for h in self._hostlist)
            tally.changed = False
        certs = {snapshot.default_cert.digest: snapshot.default_cert, **tally.certs()}
        notes = [*ann_notes, *tally.notes(self._hostlist)]
        upstreams = tally.upstreams()
        for name, (svc, sp) in tally.recipes().items():
            upstreams[name] = replace(upstreams[name], endpoints=self.endpoints(lookup, svc, sp, notes))
        extras = tally.extras()
        streams, stream_notes = build_streams(lookup, snapshot.tcp_services, snapshot.udp_services,
                                              snapshot.reserved_ports)  # fmt: skip
        notes.extend(stream_notes)
        return Model(
            servers=self._servers,
            upstreams=tuple(upstreams[name] for name in sorted(upstreams)),
            certificates=tuple(certs[d] for d in sorted(certs)),
            default_cert=snapshot.default_cert.digest,
            settings=settings,
            ingresses=served,
            rejected=rejected,
            notes=tuple(dict.fromkeys(notes)),
            rate_zones=extras.rate_zones,
            conn_zones=extras.conn_zones,
            session_cookies=extras.session_cookies,
            affinity_cookies=extras.affinity_cookies,
            http_needs=extras.http_needs,
            streams=streams,
        )

    def _update_members(self, snapshot: Snapshot, excluded: frozenset[str]) -> tuple[set[str], bool]:
        """Bring the members up to ``snapshot``: the hosts whose Ingresses changed, and whether
        any Ingress came, went or changed."""
        # By identity: the store replaces a record on every change, and members keep theirs
        # alive, so an id met again is the same unchanged Ingress (no key to format for it).
        current = {id(ing): ing for ing in snapshot.ingresses}
        members, by_id = self._members, self._by_id
        for oid, ing in current.items():
            if oid not in by_id:
                self._status_only(oid, ing, current)
        dirty: set[str] = set()
        gone = [key for oid, key in by_id.items() if oid not in current]
        gone += [key for key in excluded if key in members and key not in gone]
        for key in gone:
            dirty.update(self._forget(key))
        added = False
        for oid, ing in current.items():
            if oid in by_id:
                continue
            key = ingress_key(ing)
            if key in excluded:
                continue
            added = True
            dirty.update(self._admit(snapshot, oid, ing, key))
        if not self._hostorder or self._hostorder[0][1] != CATCH_ALL:
            self._hostorder.insert(0, (host_order(CATCH_ALL), CATCH_ALL))
            dirty.add(CATCH_ALL)
        self._hostlist = [host for _, host in self._hostorder]
        return dirty, bool(gone) or added

    def _status_only(self, oid: int, ing: Ingress, current: dict[int, Ingress]) -> None:
        """A new record of a member that differs from the member's own only in status (and
        resourceVersion): the controller's own status writes, one per Ingress after a bulk
        load. It stands for the member without a parse or a host built again; at 10,000
        Ingresses those writes made every reconcile of the next seconds rebuild thousands of
        hosts (a Secret rotation then took 1.7 s)."""
        key = ingress_key(ing)
        found = self._members.get(key)
        # (A rejected member is parsed again: its Rejection names the version it was made of.)
        if found is None or isinstance(found[1], Rejection) or self._oid[key] in current:
            return
        if not same_but_status(found[0], ing):
            return
        del self._by_id[self._oid[key]]
        self._by_id[oid] = key
        self._oid[key] = oid
        self._live[key] = ing

    def _forget(self, key: str) -> list[str]:
        """Drop the member ``key``: the hosts it touched (a host no member names any more
        leaves the server order)."""
        old, parsed = self._members.pop(key)
        del self._by_id[self._oid.pop(key)]
        self._live.pop(key, None)
        _drop(self._aged, (age_key(old), key))
        if isinstance(parsed, Rejection):
            return []
        hosts = touches(parsed)
        for host in hosts:
            keys = self._host_keys[host]
            keys.discard(key)
            if not keys:
                del self._host_keys[host]
                if host != CATCH_ALL:
                    _drop(self._hostorder, (host_order(host), host))
        return hosts

    def _admit(self, snapshot: Snapshot, oid: int, ing: Ingress, key: str) -> list[str]:
        """Parse and add the member ``key`` (``oid``: its record's id): the hosts it touches
        (a host new to the members joins the server order)."""
        parsed = parse_ingress(snapshot, ing, key)
        self._members[key] = (ing, parsed)
        self._by_id[oid] = key
        self._oid[key] = oid
        self._live.pop(key, None)
        bisect.insort(self._aged, (age_key(ing), key))
        if isinstance(parsed, Rejection):
            return []
        hosts = touches(parsed)
        for host in hosts:
            if host not in self._host_keys and host != CATCH_ALL:
                bisect.insort(self._hostorder, (host_order(host), host))
            self._host_keys.setdefault(host, set()).add(key)
        return hosts

    def _age_order(self) -> tuple[tuple[str, ...], tuple[Rejection, ...], tuple[str, ...]]:
        """Served Ingresses oldest first, the rejected, and the annotations' notes."""
        served: list[str] = []
        rejected: list[Rejection] = []
        notes: list[str] = []
        members = self._members
        for _, key in self._aged:
            parsed = members[key][1]
            if isinstance(parsed, Rejection):
                rejected.append(parsed)
                continue
            served.append(key)
            notes.extend(f"{key}: {n}" for n in parsed[1])
        return tuple(served), tuple(rejected), tuple(notes)

    def member(self, key: str) -> Ingress | None:
        """The record of Ingress ``key`` ("ns/name") the last build served or rejected, if any."""
        found = self._members.get(key)
        return found[0] if found is not None else None

    def members_of(self, host: str) -> list[Member]:
        """The Ingresses the last build served on ``host``, oldest first (for the admission webhook)."""
        return self._group(host)

    def _group(self, host: str) -> list[Member]:
        """The Ingresses touching ``host``, oldest first."""
        members = self._members
        found = [(members[k][0], k, members[k][1]) for k in self._host_keys.get(host, ())]
        group = [(ing, key, parsed) for ing, key, parsed in found if not isinstance(parsed, Rejection)]
        return sorted(group, key=lambda m: age_key(m[0]))

    def begin(self, lookup: Lookup) -> None:
        """A new build: hosts need their look-ups checked only if Services, Secrets or ConfigMaps changed
        since the last one (endpoint changes, the common case, touch neither)."""
        generations = lookup.generations
        seen = (generations.get("services", 0), generations.get("secrets", 0), generations.get("configmaps", 0))
        self._stable = seen == self._generations
        self._generations = seen

    def intern(self, settings: NginxSettings) -> NginxSettings:
        """The same settings object while the values are the same: hosts compare it by identity."""
        if self._settings is None or self._settings != settings:
            self._settings = settings
        return self._settings

    def host(self, host: str, members: list[Member], lookup: Lookup, settings: NginxSettings) -> HostBuilt:
        found = self._hosts.get(host)
        if found is not None and found.still(members, lookup, settings, self._stable):
            return found
        self.built += 1
        built = self._hosts[host] = build_host(host, members, lookup, settings)
        return built

    def endpoints(self, lookup: Lookup, svc: Service, sp: ServicePort, notes: list[str]) -> tuple[tuple[str, int], ...]:
        slices = lookup.slices_for_service(svc.namespace, svc.name)
        key = (id(svc), sp.name or "", sp.port)
        found = self._endpoints.get(key)
        if found is not None and found[0] is svc and len(found[1]) == len(slices) and all(
            a is b for a, b in zip(found[1], slices, strict=True)
        ):
            notes.extend(found[3])
            return found[2]
        mine: list[str] = []
        ready = ready_endpoints(lookup, svc, sp, mine)
        notes.extend(mine)
        if len(self._endpoints) > 65536:  # old services' entries: rebuilding them is cheap
            self._endpoints.clear()
        self._endpoints[key] = (svc, slices, ready, tuple(mine))
        return ready


