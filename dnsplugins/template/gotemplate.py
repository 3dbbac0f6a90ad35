"""The part of Go's text/template that CoreDNS's template plugin is written with, parsed at load time.

Text with actions `{{ PIPELINE }}` (`{{-` and `-}}` trim the white space beside them, `{{/* ... */}}`
is a comment). A pipeline is commands joined by `|`, each command's value passed as the last argument
of the next. A command is a field chain (`.Name`, `.Group.a`, `.Question.Name`; `.` alone is the
data), a literal (`"text"` with Go's escapes, `` `raw` ``, integers, `true`, `false`, `nil`), a
parenthesised pipeline, or a function with its arguments: `index`, `len`, `print`, `printf`,
`println`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `and`, `or`, `not`, `slice` (Go's builtins) and those
its user adds (`parseInt`). A field that is a method takes arguments too (`.Meta "label"`).
Control actions (`if`, `range`, `with`, `define`, `template`, `block`), variables (`$x`) and
assignments are not supported: they are errors at load time, as is a function that does not exist. A
top-level field the data does not have loads, as in Go, and fails the template when it runs.

Values print as Go prints them: strings as they are, `true`/`false`, a missing map key as
`<no value>`, arrays as `[a b c]`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class TemplateError(ValueError):
    """A template that cannot be parsed (load time) or executed (one query)."""


NO_VALUE = "<no value>"


class Missing:
    """A map's missing key: printed as `<no value>`, empty to `len`, false to `if`-like functions."""

    def __str__(self) -> str:
        return NO_VALUE


MISSING = Missing()


def text_of(v: object) -> str:
    """`v` as Go's fmt prints it with %v."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(text_of(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{text_of(k)}:{text_of(x)}" for k, x in sorted(v.items())) + "]"
    return str(v)


def _truth(v: object) -> bool:
    """Go template truth: false, 0, nil, empty strings and collections are false."""
    if isinstance(v, Missing):
        return False
    return bool(v)


_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d+))?([vsdqxXotcbeEfFgG%])")


def _printf(fmt: object, *args: object) -> str:
    """Go's Sprintf for the common verbs; a verb without an argument prints as Go does, %!v(MISSING)."""
    it = iter(args)

    def one(m: re.Match[str]) -> str:
        flags, width, prec, verb = m.groups()
        if verb == "%":
            return "%"
        try:
            v = next(it)
        except StopIteration:
            return f"%!{verb}(MISSING)"
        spec = "%" + flags + width + (f".{prec}" if prec else "")
        if verb in "vs":
            return (spec + "s") % text_of(v)
        if verb == "q":
            return (spec + "s") % ('"' + text_of(v).replace("\\", "\\\\").replace('"', '\\"') + '"')
        if verb == "t":
            return (spec + "s") % text_of(v)
        if verb in "dxXobc":
            n = _int(v)
            if verb == "c":
                return chr(n)
            return (spec + ("d" if verb == "b" else verb)) % n if verb != "b" else format(n, "b")
        return (spec + verb) % float(text_of(v))

    out = _VERB.sub(one, text_of(fmt))
    extra = list(it)
    if extra:
        out += "%!(EXTRA " + ", ".join(f"{type(x).__name__}={text_of(x)}" for x in extra) + ")"
    return out


def _int(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TemplateError(f"not an integer: {text_of(v)}")
    return v


def _index(v: object, *keys: object) -> object:
    for k in keys:
        if isinstance(v, Mapping):
            v = v.get(text_of(k), MISSING)
        elif isinstance(v, (list, tuple, str)):
            i = _int(k)
            if not 0 <= i < len(v):
                raise TemplateError(f"error calling index: index out of range: {i}")
            v = v[i]
        else:
            raise TemplateError(f"can't index item of type {type(v).__name__}")
    return v


def _slice(v: object, *bounds: object) -> object:
    if not isinstance(v, (list, str)):
        raise TemplateError(f"can't slice item of type {type(v).__name__}")
    idx = [_int(b) for b in bounds]
    if len(idx) > 2 or any(not 0 <= i <= len(v) for i in idx) or idx != sorted(idx):
        raise TemplateError("error calling slice: index out of range")
    return v[idx[0] if idx else 0 : idx[1] if len(idx) > 1 else len(v)]


def _len(v: object) -> int:
    if isinstance(v, (str, list, tuple, dict)):
        return len(v)
    raise TemplateError(f"error calling len: len of type {type(v).__name__}")


def _eq(a: object, *bs: object) -> bool:
    if not bs:
        raise TemplateError("missing argument for comparison")
    return any(a == b and type(a) is type(b) for b in bs)


_ORDERS: dict[str, Callable[[Any, Any], Any]] = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


def _order(op: str) -> Callable[[object, object], bool]:
    def compare(a: object, b: object) -> bool:
        if (isinstance(a, str) and isinstance(b, str)) or (_int_like(a) and _int_like(b)):
            return bool(_ORDERS[op](a, b))
        raise TemplateError(f"error calling {op}: incompatible types for comparison")

    return compare


def _int_like(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _and(first: object, *rest: object) -> object:
    for a in (first, *rest):
        if not _truth(a):
            return a
    return rest[-1] if rest else first


def _or(first: object, *rest: object) -> object:
    for a in (first, *rest):
        if _truth(a):
            return a
    return rest[-1] if rest else first


BUILTINS: dict[str, Callable[..., object]] = {
    "index": _index,
    "slice": _slice,
    "len": _len,
    "print": lambda *a: "".join(
        text_of(x) if i == 0 or isinstance(x, str) or isinstance(a[i - 1], str) else " " + text_of(x)
        for i, x in enumerate(a)
    ),
    "println": lambda *a: " ".join(text_of(x) for x in a) + "\n",
    "printf": _printf,
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": _order("lt"),
    "le": _order("le"),
    "gt": _order("gt"),
    "ge": _order("ge"),
    "and": _and,
    "or": _or,
    "not": lambda a: not _truth(a),
}
UNSUPPORTED = {
    "if",
    "else",
    "end",
    "range",
    "with",
    "define",
    "template",
    "block",
    "break",
    "continue",
    "call",
    "html",
    "js",
    "urlquery",
}


# -- the tree --------------------------------------------------------------------------------------


class Node:
    """A part of a parsed action."""

    def eval(self, data: object, final: object = None, piped: bool = False) -> object:
        """The node's value; `final` is the value piped in, when `piped`."""
        raise NotImplementedError


@dataclass
class Lit(Node):
    """A string, number or boolean literal, or nil."""

    value: object

    def eval(self, data: object, final: object = None, piped: bool = False) -> object:
        if piped:
            raise TemplateError(f"can't give argument to non-function {text_of(self.value)}")
        return self.value


@dataclass
class Field(Node):
    """`.A.B` on the data (`.` alone: the data); a method at the end takes the command's arguments."""

    path: list[str]
    args: list[Node]

    def eval(self, data: object, final: object = None, piped: bool = False) -> object:
        v = data
        for i, name in enumerate(self.path):
            if i == 0 and isinstance(v, Mapping) and name not in v:
                # The data is a struct to Go: a field it lacks is an error, unlike a map's missing key.
                raise TemplateError(f"can't evaluate field {name} in type *template.templateData")
            if isinstance(v, Mapping):
                v = v.get(name, MISSING)
            elif callable(getattr(v, "field", None)):
                v = v.field(name)  # type: ignore[attr-defined]  # checked just above
            else:
                raise TemplateError(f"can't evaluate field {name} in type {type(v).__name__}")
            if callable(v) and not isinstance(v, Missing):
                args = [a.eval(data) for a in self.args] + ([final] if piped else [])
                if i != len(self.path) - 1:
                    raise TemplateError(f"{name} is a method: it ends a field chain")
                try:
                    return v(*args)
                except TypeError:
                    raise TemplateError(f"wrong number of args for {name}: got {len(args)}") from None
        if self.args or piped:
            raise TemplateError(f".{'.'.join(self.path)} is not a method but has arguments")
        return v


@dataclass
class Func(Node):
    """A function with its arguments."""

    name: str
    fn: Callable[..., object]
    args: list[Node]

    def eval(self, data: object, final: object = None, piped: bool = False) -> object:
        args = [a.eval(data) for a in self.args] + ([final] if piped else [])
        try:
            return self.fn(*args)
        except TemplateError:
            raise
        except (TypeError, ValueError, OverflowError, IndexError, KeyError) as e:
            raise TemplateError(f"error calling {self.name}: {e}") from None


@dataclass
class Pipeline(Node):
    """Commands joined by `|`."""

    commands: list[Node]

    def eval(self, data: object, final: object = None, piped: bool = False) -> object:
        v = self.commands[0].eval(data, final, piped)
        for c in self.commands[1:]:
            v = c.eval(data, v, True)
        return v


# -- the parser ------------------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(
    r"""\s*(?:
    (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|\d+))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<var>\$[A-Za-z0-9_]*)
  | (?P<punct>[()|]|:=|=)
)""",
    re.X,
)
MAX_DEPTH = 64  # deeper parentheses are refused at load (Python's stack is finite)
_GO_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}


def _go_string(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] in "xuU":
            return chr(int(e[1:], 16))
        if e[0] in "01234567":
            return chr(int(e, 8))
        if e in _GO_ESCAPES:
            return _GO_ESCAPES[e]
        raise TemplateError(f"invalid escape \\{e}")

    return re.sub(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)", one, text[1:-1])


class _ActionParser:
    def __init__(self, text: str, funcs: Mapping[str, Callable[..., object]], fields: Sequence[str]) -> None:
        self.text = text
        self.funcs = funcs
        self.fields = set(fields)
        self.unknown: list[str] = []  # top-level fields the data does not have
        self.toks: list[tuple[str, str]] = []
        pos = 0
        while text[pos:].strip():
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise TemplateError(f"unexpected {text[pos:].strip()[:20]!r} in {{{{{text}}}}}")
            kind = m.lastgroup or ""
            self.toks.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "")

    def parse(self) -> Pipeline:
        if not self.toks:
            raise TemplateError("missing value for command")
        first = self.peek()
        if first[0] == "name" and first[1] in UNSUPPORTED:
            raise TemplateError(f"{{{{{first[1]}}}}} is not supported here (only values and functions)")
        pipe = self.pipeline()
        if self.i < len(self.toks):
            raise TemplateError(f"unexpected {self.peek()[1]!r} in {{{{{self.text}}}}}")
        return pipe

    def pipeline(self) -> Pipeline:
        commands = [self.command()]
        while self.peek() == ("punct", "|"):
            self.i += 1
            commands.append(self.command())
        return Pipeline(commands)

    def command(self) -> Node:
        kind, value = self.peek()
        if kind == "end" or (kind == "punct" and value in "|)"):
            raise TemplateError("missing value for command")
        if kind == "name" and value not in ("true", "false", "nil"):
            self.i += 1
            fn = self.funcs.get(value) or BUILTINS.get(value)
            if fn is None:
                if value in UNSUPPORTED:
                    raise TemplateError(f"{value} is not supported here (only values and functions)")
                raise TemplateError(f'function "{value}" not defined')
            return Func(value, fn, self.arguments())
        if kind == "field":
            self.i += 1
            chain = self.field(value)
            chain.args = self.arguments()
            return chain
        node = self.operand()
        if self.peek()[0] not in ("end",) and self.peek() not in (("punct", "|"), ("punct", ")")):
            raise TemplateError(f"can't give argument to non-function {text_of(getattr(node, 'value', ''))}")
        return node

    def arguments(self) -> list[Node]:
        args: list[Node] = []
        while self.peek()[0] != "end" and self.peek() not in (("punct", "|"), ("punct", ")")):
            args.append(self.operand())
        return args

    def field(self, value: str) -> Field:
        path = [p for p in value.split(".") if p]
        if path and path[0] not in self.fields:
            self.unknown.append(path[0])  # Go finds out only when it runs: the template still loads
        return Field(path, [])

    def operand(self) -> Node:
        kind, value = self.peek()
        self.i += 1
        if kind == "field":
            return self.field(value)
        if kind == "str":
            return Lit(_go_string(value))
        if kind == "raw":
            return Lit(value[1:-1])
        if kind == "num":
            return Lit(int(value, 0))
        if kind == "name":
            if value in ("true", "false", "nil"):
                return Lit({"true": True, "false": False, "nil": None}[value])
            fn = self.funcs.get(value) or BUILTINS.get(value)
            if fn is None:
                raise TemplateError(f'function "{value}" not defined')
            return Func(value, fn, [])  # a function as an argument is called without arguments, as in Go
        if (kind, value) == ("punct", "("):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise TemplateError(f"parentheses nested more than {MAX_DEPTH} deep")
            pipe = self.pipeline()
            self.depth -= 1
            if self.peek() != ("punct", ")"):
                raise TemplateError(f"unclosed left paren in {{{{{self.text}}}}}")
            self.i += 1
            return pipe
        if kind == "var":
            raise TemplateError(f"variables ({value}) are not supported")
        raise TemplateError(f"unexpected {value or 'end'!r} in {{{{{self.text}}}}}")


@dataclass
class Template:
    """A parsed template: literal text and actions in turn."""

    source: str
    parts: list[str | Pipeline]
    unknown_fields: list[str] = field(default_factory=list)  # each fails the template when it runs

    def render(self, data: object) -> str:
        out: list[str] = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            else:
                out.append(text_of(p.eval(data)))
        return "".join(out)


def parse_template(text: str, funcs: Mapping[str, Callable[..., object]], fields: Sequence[str]) -> Template:
    """Parse `text`; `funcs` are the functions its user adds, `fields` the data's top-level fields.
    Raises TemplateError. A field the data does not have is no error here, as in Go: the template loads,
    names it in `unknown_fields`, and fails when it runs."""
    parts: list[str | Pipeline] = []
    unknown: list[str] = []
    pos = 0
    for m in _ACTION.finditer(text):
        literal = text[pos : m.start()]
        if m.group(1):
            literal = literal.rstrip()
        parts.append(literal)
        body = m.group(2)
        if body.strip().startswith("/*"):
            if not body.strip().endswith("*/"):
                raise TemplateError("unclosed comment")
        else:
            action = _ActionParser(body, funcs, fields)
            parts.append(action.parse())
            unknown.extend(action.unknown)
        pos = m.end()
        if m.group(3):
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip())
    tail = text[pos:]
    if "{{" in tail:
        raise TemplateError("unclosed action")
    parts.append(tail)
    return Template(text, [p for p in parts if p != ""], unknown)
