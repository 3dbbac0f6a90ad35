"""The cluster a plugin reads, as a key into the process's shared stores (kubewatch.shared).

kubernetes and k8s_gateway name their cluster the same way (`kubeconfig`, `endpoint` with `tls`,
`manifests`, or the pod's service account); two blocks or plugins that name it alike read one store
and one watch per kind.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from corefile import Dispenser
from kubewatch import ClusterConfig, KubeError, WatchSpec
from kubewatch.shared import SHARED, ApiOrigin, ManifestOrigin, Membership, Origin


@dataclass(frozen=True)
class ClusterRef:
    """Where a plugin's objects come from, as its Corefile block says it."""

    manifests: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    endpoint: str | None = None
    tls: tuple[str, str, str] | None = None

    @property
    def key(self) -> Hashable:
        if self.manifests is not None:
            return ("manifests", self.manifests)
        if self.kubeconfig is not None:
            return ("kubeconfig", self.kubeconfig, self.context)
        if self.endpoint is not None:
            return ("endpoint", self.endpoint, self.tls)
        return ("in-cluster",)

    def config(self) -> ClusterConfig:
        """The connection settings (raises KubeError when they cannot even be described)."""
        if self.kubeconfig is not None:
            return ClusterConfig.from_kubeconfig(self.kubeconfig, self.context)
        if self.endpoint is not None:
            cert, key, ca = self.tls if self.tls is not None else (None, None, None)
            return ClusterConfig.from_url(self.endpoint, cert_file=cert, key_file=key, ca_file=ca)
        return ClusterConfig.in_cluster()

    def config_at(self, d: Dispenser) -> ClusterConfig | None:
        """The connection settings, built at load time so that a Corefile naming a cluster that cannot
        even be described fails with the directive's line; None for manifests."""
        if self.manifests is not None:
            return None
        try:
            return self.config()
        except KubeError as e:
            raise d.err(str(e)) from None

    def join(self, specs: Iterable[WatchSpec], cluster: ClusterConfig | None = None) -> Membership:
        """A share of the store of this cluster for `specs` (`cluster`: the settings built at setup)."""

        def origin() -> Origin:
            if self.manifests is not None:
                return ManifestOrigin(self.manifests)
            return ApiOrigin(cluster or self.config())

        return SHARED.join(self.key, specs, origin)
