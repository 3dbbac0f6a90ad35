"""Secondary indexes of the store."""

from __future__ import annotations

from typing import Generic, TypeVar

from kubewatch.records import EndpointSlice, Pod, Record, Service

T = TypeVar("T", bound=tuple[object, ...])  # records: a lone value is never a list


class MultiIndex(Generic[T]):
    """key -> values, storing a lone value bare and only several in a list.

    Nearly every IP maps to exactly one object, so a list per key would cost about 70 bytes
    for nothing on each of the 200,000 keys of a large cluster. Records are tuples, hence
    the list (never a tuple) for the several-values case.
    """

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[str, T | list[T]] = {}

    def add(self, key: str, value: T) -> None:
        cur = self._data.get(key)
        if cur is None:
            self._data[key] = value
        elif isinstance(cur, list):
            cur.append(value)
        else:
            self._data[key] = [cur, value]

    def remove(self, key: str, value: T) -> None:
        cur = self._data.get(key)
        if cur is None:
            return
        if isinstance(cur, list):
            for i, item in enumerate(cur):
                if item is value:
                    del cur[i]
                    break
            else:
                if value in cur:
                    cur.remove(value)
            if len(cur) == 1:
                self._data[key] = cur[0]
            elif not cur:
                del self._data[key]
        elif cur is value or cur == value:
            del self._data[key]

    def get(self, key: str) -> tuple[T, ...]:
        cur = self._data.get(key)
        if cur is None:
            return ()
        if isinstance(cur, list):
            return tuple(cur)
        return (cur,)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()


class Indexes:
    """The look-ups DNS and ingress need beyond (namespace, name)."""

    def __init__(self) -> None:
        self.services_by_ip: MultiIndex[Service] = MultiIndex()
        self.slices_by_ip: MultiIndex[EndpointSlice] = MultiIndex()
        self.pods_by_ip: MultiIndex[Pod] = MultiIndex()
        # namespace -> service name -> slice name -> slice
        self.slices_by_service: dict[str, dict[str, dict[str, EndpointSlice]]] = {}
        # The same for the Multi-Cluster Services label (slices that back a ServiceImport).
        self.mc_slices_by_service: dict[str, dict[str, dict[str, EndpointSlice]]] = {}

    def add(self, rec: Record) -> None:
        if isinstance(rec, EndpointSlice):
            self._add_slice(rec)
        elif isinstance(rec, Service):
            for ip in rec.cluster_ips:
                self.services_by_ip.add(ip, rec)
        elif isinstance(rec, Pod) and not rec.deleting:
            # CoreDNS drops pods that are being deleted from its pod answers.
            for ip in rec.ips:
                self.pods_by_ip.add(ip, rec)

    def remove(self, rec: Record) -> None:
        if isinstance(rec, EndpointSlice):
            self._remove_slice(rec)
        elif isinstance(rec, Service):
            for ip in rec.cluster_ips:
                self.services_by_ip.remove(ip, rec)
        elif isinstance(rec, Pod) and not rec.deleting:
            for ip in rec.ips:
                self.pods_by_ip.remove(ip, rec)

    def _add_slice(self, sl: EndpointSlice) -> None:
        if sl.service_name:
            _file(self.slices_by_service, sl, sl.service_name)
        if sl.mc_service_name:
            _file(self.mc_slices_by_service, sl, sl.mc_service_name)
        add = self.slices_by_ip.add
        for ep in sl.endpoints:
            for addr in ep.addresses:
                add(addr, sl)

    def _remove_slice(self, sl: EndpointSlice) -> None:
        if sl.service_name:
            _unfile(self.slices_by_service, sl, sl.service_name)
        if sl.mc_service_name:
            _unfile(self.mc_slices_by_service, sl, sl.mc_service_name)
        remove = self.slices_by_ip.remove
        for ep in sl.endpoints:
            for addr in ep.addresses:
                remove(addr, sl)


SliceIndex = dict[str, dict[str, dict[str, EndpointSlice]]]  # namespace -> service -> slice name -> slice


def _file(index: SliceIndex, sl: EndpointSlice, service: str) -> None:
    index.setdefault(sl.namespace, {}).setdefault(service, {})[sl.name] = sl


def _unfile(index: SliceIndex, sl: EndpointSlice, service: str) -> None:
    by_svc = index.get(sl.namespace)
    if by_svc is not None:
        slices = by_svc.get(service)
        if slices is not None and slices.get(sl.name) is sl:
            del slices[sl.name]
            if not slices:
                del by_svc[service]
                if not by_svc:
                    del index[sl.namespace]
