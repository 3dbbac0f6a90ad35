"""Building a server block's plugin chain, once, at load time, back to front."""

from __future__ import annotations

from dnslib import DNSRecord

from dnsserver.plugin import Next, Plugin, PluginError
from dnsserver.request import Request


async def _end_of_chain(req: Request) -> DNSRecord | None:
    # Nobody answered: the server turns None into SERVFAIL (CoreDNS's NextOrFailure).
    return None


def _link(plugin: Plugin, nxt: Next) -> Next:
    serve = plugin.serve
    name = plugin.name

    async def handler(req: Request) -> DNSRecord | None:
        try:
            reply = await serve(req, nxt)
        except PluginError:
            raise
        except Exception as e:  # tag with the plugin's name once, at the innermost level it happened
            raise PluginError(name, e) from e
        # The innermost plugin that produced the reply returns first, so it is the one recorded.
        if reply is not None and req.answered_by is None:
            req.answered_by = name
        return reply

    return handler


def build_chain(plugins: list[Plugin]) -> Next:
    """`plugins` in execution order; config-only ones are skipped."""
    nxt: Next = _end_of_chain
    for p in reversed(plugins):
        if p.in_chain:
            nxt = _link(p, nxt)
    return nxt
