"""kubernetes: serve cluster DNS (the Kubernetes DNS-Based Service Discovery spec) from a watch cache.

## Syntax

```
kubernetes [ZONES...] {
    endpoint URL
    tls CERT KEY CACERT
    kubeconfig KUBECONFIG [CONTEXT]
    manifests PATH
    namespaces NAMESPACE...
    namespace_labels EXPRESSION
    labels EXPRESSION
    pods disabled|insecure|verified
    endpoint_pod_names
    ttl TTL
    noendpoints
    fallthrough [ZONES...]
    ignore empty_service
    multicluster [ZONES...]
    startup_timeout DURATION
}
```

* **ZONES** default to the block's; reverse zones (`in-addr.arpa`, `ip6.arpa`, or CIDRs in the block
  keys) enable PTR answers. At least one forward zone is needed; the first is the primary zone that
  PTR targets are built in.
* Where the objects come from: `kubeconfig` (path and context), `endpoint` (a URL, with `tls` client
  certificate, key and CA), the pod's service account when neither is given, or `manifests`: a file
  or directory of the YAML manifests you would `kubectl apply`, re-read when it changes (no cluster
  needed). Services, EndpointSlices and Namespaces are watched; Pods only with `pods verified`.
* `namespaces` limits the namespaces served; `namespace_labels` and `labels` are label selectors sent
  to the API server (for Namespaces; for Services, EndpointSlices and Pods).
* `pods`: `disabled` (default; pod names are NXDOMAIN), `insecure` (the address is read from the name),
  `verified` (only if a running pod in that namespace has the address).
  `verified` also gives `autopath @kubernetes` each client Pod's search path (by its address).
* `endpoint_pod_names`: an endpoint without a hostname is named after its pod, not its dashed address.
* `ttl` for every record (default 5, 0 to 3600; `dns-version` is always 28800).
* `noendpoints`: do not watch EndpointSlices (headless and endpoint names are then NXDOMAIN).
* `fallthrough [ZONES]`: a name error in those zones goes to the next plugin (NODATA never does).
* `ignore empty_service`: a ClusterIP service without a ready endpoint is NXDOMAIN.
* `multicluster ZONES`: serve those of the plugin's zones (`clusterset.local`) from the Multi-Cluster
  Services API, as CoreDNS does: ServiceImports (`multicluster.x-k8s.io/v1alpha1`, ClusterSetIP and
  Headless) and the EndpointSlices labelled `multicluster.kubernetes.io/service-name` and
  `multicluster.kubernetes.io/source-cluster`: A/AAAA and SRV for `SERVICE.NAMESPACE.svc.ZONE`,
  `ENDPOINT.CLUSTER.SERVICE.NAMESPACE.svc.ZONE` for the endpoints of headless imports (see
  dnsplugins/kubernetes/multicluster.py). ServiceImports are watched too (or read from `manifests`); a
  cluster without their CRD is reported once and its imports are NXDOMAIN, the rest served. The
  EndpointSlices are the ones already watched (`labels` applies; with `noendpoints` there are none).
* `k8s_external` in the same block answers from this plugin's cache (no watch of its own).
* `startup_timeout` (default 5s): how long start-up waits for the first sync; until it is done, name
  errors are SERVFAIL (with the SOA) rather than NXDOMAIN, and `/ready` says not ready.

Records: A/AAAA for Services (dual stack), headless Services (one per ready endpoint) and endpoint
names; SRV for named ports with targets in the additional section; PTR for ClusterIPs and endpoint
addresses; CNAME for ExternalName (chased inside the zone, resolved through this server otherwise);
`dns-version` TXT; SOA and NS at the apex; pod names as configured. Every negative answer carries the
SOA, whose serial is the time of the last change that altered an answer. Answers are computed once
per change of the watched objects and then sent from wire bytes on the server's hot path (multicluster
zones' too: ServiceImports count as a change of the watched objects).

The store and its watches are shared with every plugin (another block's kubernetes, k8s_gateway) that
reads the same cluster the same way (`kubeconfig` and context, `endpoint`, `manifests`, or the service
account): one watch per kind in the process, kept across a reload that keeps the kinds.

## Examples

```corefile
cluster.local in-addr.arpa ip6.arpa {
    kubernetes {
        manifests cluster.yaml
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
}
```

```corefile
cluster.local clusterset.local {
    kubernetes {
        manifests cluster.yaml
        multicluster clusterset.local
    }
}
```
"""

from __future__ import annotations

from corefile import Dispenser
from dnsplugins.kubernetes.config import KubernetesConfig, parse
from dnsplugins.kubernetes.kubernetes import Kubernetes, cluster_config, cluster_ref, watch_specs
from dnsserver.plugin import SetupContext


def setup(d: Dispenser, ctx: SetupContext) -> Kubernetes:
    cfg = parse(d, ctx)
    return Kubernetes(cfg, ctx.instance, cluster_ref(cfg).config_at(d))


__all__ = ["Kubernetes", "KubernetesConfig", "cluster_config", "parse", "setup", "watch_specs"]
