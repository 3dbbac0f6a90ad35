"""metadata: collect what plugins know about each query, for the plugins after them to read.

## Syntax

```
metadata [ZONES...]
```

* **ZONES** are the zones whose queries get metadata; default the server block's zones.

For each query in ZONES, before any other plugin runs, every plugin of the block that provides
metadata notes its labels on the query. Labels are named `plugin/NAME`; a value is a string (the
empty string is "no metadata"), or a function worked out only when read. Plugins read them with
`req.meta_value(LABEL)` (`req.set_meta` and `req.meta_labels` are the rest of the API, in
`dnsserver.request`); `log` prints one with `{/LABEL}`. Without `metadata` in the block no labels are
collected. The directive may appear once per block and takes no block.

Providers: `kubernetes` notes, for a name in its zones, `kubernetes/kind` (`svc` or `pod`),
`kubernetes/namespace`, `kubernetes/service`, `kubernetes/endpoint`, `kubernetes/port-name` and
`kubernetes/protocol` (empty when the name has no such part), or `kubernetes/parse-error` for a name
it cannot read.

The block does not answer from stored wire answers (the hot path) while `metadata` is in it: a
hot-path answer is sent before any plugin runs, so it would carry no metadata.

## Examples

```corefile
cluster.local {
    metadata
    log . "{name} {/kubernetes/kind} {/kubernetes/namespace}"
    kubernetes {
        manifests cluster.yaml
    }
}
```
"""

from __future__ import annotations

from dnslib import DNSRecord

from corefile import Dispenser
from dnsserver.plugin import MetadataProvider, Next, Plugin, SetupContext, match_zone, plugin_zones
from dnsserver.request import Request


class Metadata(Plugin):
    """`metadata`: asks the block's metadata providers about each query in its zones."""

    name = "metadata"

    def __init__(self, zones: list[str], ctx: SetupContext | None = None) -> None:
        self.zones = zones
        self.ctx = ctx
        self._providers: list[MetadataProvider] | None = None

    @property
    def providers(self) -> list[MetadataProvider]:
        """The block's providers in chain order, found once the block is built (it is not at setup)."""
        if self._providers is None:
            block = self.ctx.block if self.ctx is not None else None
            if block is None:
                return []
            self._providers = [p for p in block.plugins if isinstance(p, MetadataProvider)]
        return self._providers

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        if match_zone(self.zones, req.name) is not None:
            for p in self.providers:
                p.metadata(req)
        return await next(req)


def setup(d: Dispenser, ctx: SetupContext) -> Metadata:
    d.next()
    zones = plugin_zones(d.remaining_args(), ctx)
    if d.next_block() or d.next():  # a block, or a second `metadata`: CoreDNS's argument error
        raise d.arg_err()
    return Metadata(zones, ctx)
