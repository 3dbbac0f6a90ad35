"""template at query time: pick the first template that matches, render its records, follow CNAMEs."""

from __future__ import annotations

from dataclasses import dataclass

from dnslib import QTYPE, RR, DNSQuestion, DNSRecord
from prometheus_client import Counter

from dnsplugins.forward.upstream import follow_self
from dnsplugins.template.config import CLASS_ANY, TYPE_ANY, TemplateSpec
from dnsplugins.template.gotemplate import Template as GoTemplate
from dnsplugins.template.gotemplate import TemplateError
from dnsplugins.template.rr import CLASSES, RRError, parse_rr
from dnsplugins.view.expression import Env, ExprError, evaluate
from dnsserver.metrics import REGISTRY
from dnsserver.plugin import Next, Plugin, ServerInstance, SetupContext, match_zone
from dnsserver.request import Request
from dnsserver.respond import extended_error
from dnsserver.wire.consts import SERVFAIL, TYPE_A, TYPE_AAAA, TYPE_CNAME
from dnsserver.wire.views import meta_value

CLASS_NAMES = {code: name for name, code in CLASSES.items()}
_SECTION = ["server", "zone", "view", "class", "type", "section", "template"]
MATCHES = Counter(
    "coredns_template_matches",
    "Counter of template regex matches.",
    ["server", "zone", "view", "class", "type"],
    registry=REGISTRY,
)
TEMPLATE_FAILURES = Counter(
    "coredns_template_template_failures", "Counter of go template failures.", _SECTION, registry=REGISTRY
)
RR_FAILURES = Counter("coredns_template_rr_failures", "Counter of mis-templated RRs.", _SECTION, registry=REGISTRY)


class QuestionView:
    """`.Question`: fields as Go's dns.Question names them; printed as Go prints one."""

    def __init__(self, q: DNSQuestion) -> None:
        self.q = q

    def field(self, name: str) -> object:
        values = {"Name": str(self.q.qname), "Qtype": int(self.q.qtype), "Qclass": int(self.q.qclass)}
        if name not in values:
            raise TemplateError(f"can't evaluate field {name} in type *dns.Question")
        return values[name]

    def __str__(self) -> str:
        return f";{self.q.qname}\t{CLASS_NAMES.get(self.q.qclass, self.q.qclass)}\t {QTYPE.get(self.q.qtype)}"


class MessageView:
    """`.Message`: the query's header fields and question as Go's dns.Msg names them; printed as dig would."""

    def __init__(self, msg: DNSRecord) -> None:
        self.msg = msg

    def field(self, name: str) -> object:
        h = self.msg.header
        values: dict[str, object] = {
            "Id": int(h.id),
            "Opcode": int(h.opcode),
            "RecursionDesired": bool(h.rd),
            "CheckingDisabled": bool(h.cd),
            "AuthenticatedData": bool(h.ad),
            "Response": bool(h.qr),
            "Question": [QuestionView(q) for q in self.msg.questions],
        }
        if name not in values:
            raise TemplateError(f"can't evaluate field {name} in type *dns.Msg")
        return values[name]

    def __str__(self) -> str:
        return str(self.msg)


@dataclass
class Matched:
    """The outcome of trying one template: its data when it matched, else whether to fall through."""

    data: dict[str, object] | None
    fallthrough: bool


def _meta(req: Request) -> object:
    def meta(label: object) -> str:
        return meta_value(req.meta, str(label))

    return meta


def try_template(t: TemplateSpec, req: Request) -> Matched:
    """Whether `t` answers `req`, with the data its records are rendered from (CoreDNS's match)."""
    zone = match_zone(t.zones, req.name)
    if zone is None:
        return Matched(None, True)
    if t.qclass != CLASS_ANY and req.qclass != CLASS_ANY and req.qclass != t.qclass:
        return Matched(None, True)
    if t.qtype != TYPE_ANY and req.qtype != TYPE_ANY and req.qtype != t.qtype:
        return Matched(None, True)
    for rx in t.regexes:
        m = rx.search(req.name)
        if m is None:
            continue
        match = [m.group(0), *(g or "" for g in m.groups())]
        group = {str(i): v for i, v in enumerate(match)}
        group.update({k: v or "" for k, v in m.groupdict().items()})
        qclass = req.qclass if req.qclass != CLASS_ANY else t.qclass
        qtype = req.qtype if req.qtype != TYPE_ANY else t.qtype
        data: dict[str, object] = {
            "Zone": zone,
            "Name": req.name,
            "Regex": rx.pattern,
            "Match": match,
            "Group": group,
            "Class": CLASS_NAMES.get(qclass, ""),
            "Type": QTYPE.get(qtype, ""),
            "Message": MessageView(req.msg),
            "Question": QuestionView(req.msg.q),
            "Remote": req.client_ip,
            "Var": {},
            "Meta": _meta(req),
        }
        if t.vars or t.exprs:
            return _conditions(t, req, data)
        return Matched(data, False)
    return Matched(None, t.fall.covers(req.name))


def _conditions(t: TemplateSpec, req: Request, data: dict[str, object]) -> Matched:
    """`var`s worked out and `expr`s checked: a failing `var` is a failure (SERVFAIL), as in CoreDNS."""
    group = data["Group"]
    assert isinstance(group, dict)
    env = Env(req, funcs={"group": lambda key: group.get(str(key), "")})
    for v in t.vars:
        try:
            env.vars[v.name] = evaluate(v.expr, env)
        except ExprError:
            return Matched(None, False)
    data["Var"] = dict(env.vars)
    for e in t.exprs:
        try:
            ok = evaluate(e, env) is True
        except ExprError:
            return Matched(None, False)
        if not ok:
            return Matched(None, t.fall.covers(req.name))
    return Matched(data, False)


class Template(Plugin):
    """`template`: answers from the first matching template of those whose zones hold the name."""

    name = "template"
    # fast_safe stays False: its answers are made per query, never stored by it, and depend on the
    # query (and maybe the client): a later plugin's stored answer must not stand in for them.

    def __init__(self, specs: list[TemplateSpec], ctx: SetupContext) -> None:
        self.specs = specs
        self.zones = [z for t in specs for z in t.zones]
        self.instance: ServerInstance | None = ctx.instance

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        if match_zone(self.zones, req.name) is None:
            return await next(req)
        for t in self.specs:
            found = try_template(t, req)
            if found.data is None:
                if not found.fallthrough:
                    return req.reply(SERVFAIL)
                continue
            data = found.data
            view = meta_value(req.meta, "view/name")
            MATCHES.labels(req.server, data["Zone"], view, data["Class"], data["Type"]).inc()
            if t.rcode == SERVFAIL:
                return req.reply(SERVFAIL)
            return await self._answer(t, req, data, view)
        return await next(req)

    async def _answer(self, t: TemplateSpec, req: Request, data: dict[str, object], view: str) -> DNSRecord:
        reply = req.reply(t.rcode, aa=True)
        for tmpl in t.answer:
            rr = _render(tmpl, data, req, view, "answer")
            reply.add_answer(rr)
            if rr.rtype == TYPE_CNAME and req.qtype in (TYPE_A, TYPE_AAAA):
                await self._follow(req, str(rr.rdata.label), reply)
        for tmpl in t.additional:
            reply.add_ar(_render(tmpl, data, req, view, "additional"))
        for tmpl in t.authority:
            reply.add_auth(_render(tmpl, data, req, view, "authority"))
        if t.ederror is not None:
            extended_error(reply, *t.ederror)
        return reply

    async def _follow(self, req: Request, target: str, reply: DNSRecord) -> None:
        """A CNAME's target asked of this very server (CoreDNS's upstream): its answer records, and its
        TC, join the reply; no answer (no server, a timeout) adds nothing."""
        await follow_self(self.instance, target, req.qtype, reply)


def _render(tmpl: GoTemplate, data: dict[str, object], req: Request, view: str, section: str) -> RR:
    labels = (req.server, str(data["Zone"]), view, str(data["Class"]), str(data["Type"]), section, tmpl.source)
    try:
        text = tmpl.render(data)
    except TemplateError:
        TEMPLATE_FAILURES.labels(*labels).inc()
        raise
    try:
        return parse_rr(text)
    except RRError:
        RR_FAILURES.labels(*labels).inc()
        raise
