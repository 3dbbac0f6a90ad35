"""template's directives read into TemplateSpecs: classes, types, zones, regexes, compiled templates and
expressions, with CoreDNS's error messages."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from dnslib import QTYPE

from corefile import Dispenser
from dnsplugins.template.gotemplate import Template as GoTemplate
from dnsplugins.template.gotemplate import TemplateError, parse_template
from dnsplugins.template.rr import CLASSES
from dnsplugins.view.expression import BUILTINS, CLOSURES, QUERY, ExprError, Node, compile_expr
from dnsserver.logs import plugin_log
from dnsserver.plugin import Fallthrough, SetupContext, plugin_zones
from dnsserver.wire.consts import RCODE_NAMES

log = plugin_log("template")

MAX_REGEX = 10000  # CoreDNS's bound: compiling a huge pattern costs memory
TYPE_ANY, CLASS_ANY = 255, 255
# The data a record template reads: what CoreDNS's templateData has.
FIELDS = ("Zone", "Name", "Regex", "Match", "Group", "Class", "Type", "Message", "Question", "Remote", "Var", "Meta")
_VAR_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_KEYWORDS = {"true", "false", "nil", "and", "or", "not", "in", "matches", "contains", "startsWith", "endsWith"}
RESERVED = set(QUERY) | set(BUILTINS) | CLOSURES | _KEYWORDS | {"metadata", "group"}
RCODES = {name: code for code, name in RCODE_NAMES.items() if code < 16}  # the header holds 4 bits


def parse_uint(text: str, base: int, bits: int) -> int:
    """Go's strconv.ParseUint: digits of `base` (0: by prefix, 0x 0o 0b or a leading 0 for octal, with
    `_` between digits) that fit in `bits` bits. Raises ValueError."""
    if not 0 < bits <= 64:
        raise ValueError(f"invalid bit size {bits}")
    digits = text
    if base == 0:
        base = 10
        low = text[:2].lower()
        if low in ("0x", "0o", "0b"):
            base, digits = {"0x": 16, "0o": 8, "0b": 2}[low], text[2:]
        elif text[:1] == "0" and len(text) > 1:
            base, digits = 8, text[1:]
        digits = digits.replace("_", "") if "__" not in digits and not digits.startswith("_") else "_"
    elif not 2 <= base <= 36:
        raise ValueError(f"invalid base {base}")
    # int() alone would take white space, a sign, a 0x prefix and underscores, which Go refuses.
    if not digits or not digits.isascii() or not digits.isalnum() or any(int(c, 36) >= base for c in digits):
        raise ValueError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    value = int(digits, base)
    if value >= 1 << bits:
        raise ValueError(f'strconv.ParseUint: parsing "{text}": value out of range')
    return value


FUNCS = {"parseInt": lambda s, base, bits: parse_uint(str(s), int(base), int(bits))}


@dataclass
class Var:
    """`var NAME EXPRESSION`."""

    name: str
    expr: Node


@dataclass
class TemplateSpec:
    """One `template` directive."""

    qclass: int
    qtype: int
    zones: list[str]
    regexes: list[re.Pattern[str]] = field(default_factory=list)
    answer: list[GoTemplate] = field(default_factory=list)
    additional: list[GoTemplate] = field(default_factory=list)
    authority: list[GoTemplate] = field(default_factory=list)
    vars: list[Var] = field(default_factory=list)
    exprs: list[Node] = field(default_factory=list)
    rcode: int = 0
    ederror: tuple[int, str] | None = None
    fall: Fallthrough = field(default_factory=Fallthrough)


def go_regex(pattern: str) -> re.Pattern[str]:
    """A Go (RE2) pattern as Python's: `(?<name>` is `(?P<name>`, Go's `\\z` is Python's `\\Z`."""
    return re.compile(re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern).replace(r"\z", r"\Z"))


def _templates(d: Dispenser) -> list[GoTemplate]:
    args = d.remaining_args()
    if not args:
        raise d.arg_err()
    out = []
    for text in args:
        try:
            tmpl = parse_template(text, FUNCS, FIELDS)
        except TemplateError as e:
            raise d.err(f"could not compile template: {text}, {e}") from None
        if tmpl.unknown_fields:
            # CoreDNS loads it and fails each query it matches; say so now, where the mistake is.
            log.warning(
                "%s:%d: template %r reads %s, which the data does not have (it has %s): the queries "
                "it answers will get SERVFAIL",
                d.file(),
                d.line(),
                text,
                ", ".join("." + f for f in tmpl.unknown_fields),
                ", ".join("." + f for f in FIELDS),
            )
        out.append(tmpl)
    return out


def _regexes(d: Dispenser) -> list[re.Pattern[str]]:
    args = d.remaining_args()
    if not args:
        raise d.arg_err()
    out = []
    for pattern in args:
        if len(pattern) > MAX_REGEX:
            raise d.err(f"regex pattern too long: {len(pattern)} > {MAX_REGEX}")
        try:
            out.append(go_regex(pattern))
        except (re.error, OverflowError, RecursionError) as e:  # a huge {n}, deep nesting: not re.error
            raise d.err(f"could not parse regex: {pattern}, {e}") from None
    return out


def _var(d: Dispenser, t: TemplateSpec) -> Var:
    args = d.remaining_args()
    if len(args) < 2:
        raise d.arg_err()
    name = args[0]
    if not _VAR_NAME.match(name):
        raise d.err(f'invalid variable name "{name}"')
    if name in RESERVED:
        raise d.err(f'variable name "{name}" is reserved')
    try:
        expr = compile_expr(" ".join(args[1:]), [v.name for v in t.vars], ["group"])
    except ExprError as e:
        raise d.err(f"could not compile expression: {name}, {e}") from None
    return Var(name, expr)


def _expr(d: Dispenser, t: TemplateSpec) -> Node:
    args = d.remaining_args()
    if not args:
        raise d.arg_err()
    try:
        return compile_expr(" ".join(args), [v.name for v in t.vars], ["group"])
    except ExprError as e:
        raise d.err(f"could not compile expression: {e}") from None


def _ederror(d: Dispenser, ctx: SetupContext, t: TemplateSpec) -> None:
    args = d.remaining_args()
    if len(args) not in (1, 2):
        raise d.arg_err()
    try:
        code = parse_uint(args[0], 10, 16)
    except ValueError as e:
        raise d.err(f"error parsing extended DNS error code {args[0]}, {e}") from None
    t.ederror = code, args[1] if len(args) == 2 else ""


def _upstream(d: Dispenser, ctx: SetupContext, t: TemplateSpec) -> None:
    d.remaining_args()  # accepted and ignored, as CoreDNS still does: CNAMEs are always followed


def _rcode(d: Dispenser, ctx: SetupContext, t: TemplateSpec) -> None:
    args = d.remaining_args()
    if len(args) != 1:
        raise d.arg_err()
    if args[0] not in RCODES:
        raise d.err(f"unknown rcode {args[0]}")
    t.rcode = RCODES[args[0]]


def _section(name: str) -> TemplateProperty:
    def read(d: Dispenser, ctx: SetupContext, t: TemplateSpec) -> None:
        getattr(t, name).extend(_templates(d))

    return read


TemplateProperty = Callable[[Dispenser, SetupContext, TemplateSpec], None]
PROPERTIES: dict[str, TemplateProperty] = {
    "match": lambda d, ctx, t: t.regexes.extend(_regexes(d)),
    "answer": _section("answer"),
    "additional": _section("additional"),
    "authority": _section("authority"),
    "var": lambda d, ctx, t: t.vars.append(_var(d, t)),
    "expr": lambda d, ctx, t: t.exprs.append(_expr(d, t)),
    "rcode": _rcode,
    "ederror": _ederror,
    "fallthrough": lambda d, ctx, t: t.fall.set(d.remaining_args(), ctx),
    "upstream": _upstream,
}


def parse(d: Dispenser, ctx: SetupContext) -> list[TemplateSpec]:
    specs: list[TemplateSpec] = []
    while d.next():
        if not d.next_arg():
            raise d.arg_err()
        qclass = CLASSES.get(d.val())
        if qclass is None:
            raise d.err(f"invalid query class {d.val()}")
        if not d.next_arg():
            raise d.arg_err()
        qtype = QTYPE.reverse.get(d.val())
        if qtype is None or d.val() != d.val().upper():
            raise d.err(f"invalid RR class {d.val()}")  # sic: CoreDNS's message says class
        t = TemplateSpec(qclass, int(qtype), plugin_zones(d.remaining_args(), ctx))
        while d.next_block():
            read = PROPERTIES.get(d.val())
            if read is None:
                raise d.arg_err()  # CoreDNS's message for a property it does not know
            read(d, ctx, t)
        if not t.regexes:
            t.regexes.append(re.compile(".*"))
        specs.append(t)
    return specs
