"""rewrite at run time: the plugin, which applies its rules to the question and maps the reply back."""

from __future__ import annotations

import copy

from dnslib import DNSRecord

from dnsplugins.rewrite.rules import (
    STOP,
    Response,
    RewriteError,
    Rule,
    State,
    valid_name,
)
from dnsserver.logs import plugin_log
from dnsserver.plugin import Next, Plugin, SetupContext
from dnsserver.request import Request
from dnsserver.wire.consts import SERVFAIL, TYPE_OPT

log = plugin_log("rewrite")


class Rewrite(Plugin):
    """`rewrite`: changes queries before the plugins after it see them, and their replies back."""

    name = "rewrite"
    # fast_safe stays False: a stored answer for a question a rule rewrites must never be sent as is.

    def __init__(self, rules: list[Rule], ctx: SetupContext | None = None) -> None:
        self.rules = rules
        self.ctx = ctx

    def _rewrite(self, req: Request, st: State) -> list[Response] | None:
        """Apply the rules to the question in `st`; the response rules that undo them, None if none matched."""
        responses: list[Response] = []
        matched = False
        for rule in self.rules:
            before = st.name
            got = rule.rewrite(st)
            if got is None:
                continue
            matched = True
            if st.name != before and not valid_name(st.name):
                self._invalid(req, st.name)
            responses.extend(got)
            if rule.mode == STOP:
                break
        return responses if matched else None

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        st = State(req.name, req.qname, req.qtype, req.qclass)
        responses = self._rewrite(req, st)
        if responses is None:
            return await next(req)

        if st.name == req.name and st.qtype == req.qtype and st.qclass == req.qclass:
            sub = req
        else:
            sub = req.clone_for(st.spelled, st.qtype, st.qclass)
        reply = await next(sub)
        if sub is not req and sub.answered_by is not None:
            req.answered_by = sub.answered_by  # the metrics label names who answered, not rewrite
        if not responses:
            return reply  # the server puts the client's question back
        if reply is None:
            if not any(r.on_empty for r in responses):
                return None
            reply = sub.reply(SERVFAIL)  # what the server would send, so an rcode rule can change it

        async def lookup(name: str, qtype: int) -> DNSRecord | None:
            return await next(sub.clone_for(name, qtype))

        msg = private_copy(reply)
        # Undo in reverse: the last rule applied is the first undone, so a chain of rules unwinds.
        for r in reversed(responses):
            await r.apply(msg, lookup)
        return msg

    def _invalid(self, req: Request, name: str) -> None:
        # The errors plugin, when loaded, logs the raised error itself; otherwise say it here, once.
        block = self.ctx.block if self.ctx is not None else None
        if block is None or not block.logs_errors:
            log.error("invalid name after rewrite: %s (query %s %s)",
                      name, req.qname, req.type_name)
        raise RewriteError(f"invalid name after rewrite: {name}")


def private_copy(reply: DNSRecord) -> DNSRecord:
    """A reply whose header and records may be changed: records are shared with other replies."""
    msg = DNSRecord(header=copy.copy(reply.header), questions=list(reply.questions))
    msg.rr = [copy.copy(r) for r in reply.rr]
    msg.auth = [copy.copy(r) for r in reply.auth]
    msg.ar = [r if r.rtype == TYPE_OPT else copy.copy(r) for r in reply.ar]
    return msg
