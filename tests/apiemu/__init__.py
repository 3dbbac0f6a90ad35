"""A Kubernetes API-server emulator for tests, run as a subprocess (``python -m tests.apiemu``).

It speaks the real protocol for the kinds Portolan uses: core/v1 namespaces, services, pods,
secrets, configmaps and events; discovery.k8s.io/v1 endpointslices; networking.k8s.io/v1
ingresses and ingressclasses (with ingresses/status); coordination.k8s.io/v1 leases;
events.k8s.io/v1 events.

- One global resourceVersion, as etcd; lists (``limit``/``continue`` from one snapshot,
  ``resourceVersion`` with NotOlderThan or Exact) and watches (resume from an rv, ``rv=0``
  initial ADDED events, ``timeoutSeconds``, ``allowWatchBookmarks``); 410 Gone when the rv is
  older than the retained history: an ERROR event on a 200 stream, as the real watch cache
  does, or an HTTP 410 (``gone_as_http``); expired continue tokens are HTTP 410.
- Label selectors (=, ==, !=, in, notin, exists, !exists, >, <) and field selectors
  (metadata.name, metadata.namespace, plus per kind e.g. status.phase, spec.nodeName, type);
  an update that moves an object out of a watch's selection is a DELETED, into it an ADDED.
- create (generateName, defaults such as ClusterIP allocation), replace with
  resourceVersion preconditions (409), merge / strategic-merge / JSON patch, delete,
  deletecollection, status subresources, no-op writes that keep the rv.
- Discovery and a minimal OpenAPI v3, so that ``kubectl apply -f``, ``get`` and ``delete``
  work; bearer tokens (changeable at run time); HTTPS with a throwaway CA.
- Restarts keep objects and resourceVersions (every write is journalled to the state file),
  but not the watch history, as a real restart: resumes from before it are 410.

Deliberate differences from a real API server: status sent on create is kept (fixtures can
create a Running pod with an IP in one call); pods are not validated; a deleted Namespace is
Terminating for ``namespace_finalize_delay`` (0.5 s) and then removed with its contents;
list items carry kind/apiVersion; fractional timeoutSeconds are accepted; no Table output,
server-side apply, OpenAPI v2, admission or RBAC.

Tests drive it through :class:`Emulator` (``tests.apiemu.harness``)::

    async with Emulator(tmp_path / "emu", tokens=["t"], tls=False) as emu:
        emu.url, emu.kubeconfig_path, emu.ca_path         # how to reach it
        await emu.create(obj) / replace(obj) / apply(obj) / update_status(obj)
        await emu.patch(api_version, kind, name, patch, namespace, patch_type="merge")
        await emu.delete(api_version, kind, name, namespace) / get(...) / list(...)
        await emu.bulk_load(objs)                          # many creates in one request
        await emu.force_gone(mode="event" | "close")       # every watch and resume gets 410
        await emu.compact(force=False) / drop_watches() / send_bookmarks()
        await emu.set_tokens(["new"]) / configure(bookmark_interval=..., ...)
        await emu.wait_for_watchers("services", count=1)   # block until watches are open
        await emu.restart() / stop() / kill() / start()    # same port, same objects
        emu.edit_state(fn)                                 # while stopped: offline writes
"""

from tests.apiemu.harness import Emulator, EmulatorError, resource_path

__all__ = ["Emulator", "EmulatorError", "resource_path"]
