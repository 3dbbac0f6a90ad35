"""prometheus: export metrics at `/metrics`, under CoreDNS's metric names and labels.

## Syntax

```
prometheus [ADDRESS] {
    runtime_metrics
}
```

* **ADDRESS** defaults to `localhost:9153`; the Kubernetes Deployment uses `:9153`.
* `runtime_metrics` is accepted for compatibility; the process_* metrics are always exported.

Only server blocks that load `prometheus` have their queries counted. The names are CoreDNS's
(`coredns_dns_requests_total`, `coredns_dns_responses_total`, `coredns_dns_request_duration_seconds`,
`coredns_dns_request_size_bytes`, `coredns_dns_response_size_bytes`, `coredns_dns_do_requests_total`,
`coredns_plugin_enabled`, `coredns_build_info`, `coredns_panics_total`, plus each plugin's own) so
existing dashboards and alerts keep working.

## Examples

```corefile
. {
    prometheus :9153
    whoami
}
```
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from corefile import Dispenser
from dnsserver.httpendpoints import address_arg
from dnsserver.metrics import REGISTRY
from dnsserver.plugin import Plugin, SetupContext

DEFAULT_ADDRESS = "localhost:9153"


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class Prometheus(Plugin):
    """`prometheus`: serves the metrics on an HTTP address (config only)."""

    name = "prometheus"
    in_chain = False
    counts_queries = True  # the server counts its block's queries

    def __init__(self, address: str) -> None:
        self.address = address


def setup(d: Dispenser, ctx: SetupContext) -> Prometheus:
    address = DEFAULT_ADDRESS
    while d.next():
        address = address_arg(d, address, 9153)
        while d.next_block():
            # Go runtime metrics have no Python counterpart; process_* metrics are always exported.
            if d.val() != "runtime_metrics" or d.remaining_args():
                raise d.unknown_property()
    ctx.http.add(address, 9153, "/metrics", _metrics)
    return Prometheus(address)
