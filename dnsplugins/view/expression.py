"""The expression language of view's `expr` and template's `var` and `expr`: a safe subset of expr-lang,
the language CoreDNS uses there, parsed into a tree and walked (nothing is handed to Python's eval).

Supported: string literals ('...' or "...", backslash escapes), integers, `true`, `false`, `nil`,
arrays `[a, b]`, indexing `a[i]`, parentheses; `!`/`not` and unary `-`; `*` `/` `%`, `+` `-` (`+` joins
strings); comparisons `==` `!=` `<` `<=` `>` `>=`; `in` and `not in` (array members, map keys),
`matches` (a regular expression), `contains`, `startsWith`, `endsWith`; `&&`/`and`, `||`/`or`, and
`a ? b : c`. Functions are the query functions of CoreDNS's expression environment (`type()`,
`name()`, `class()`, `proto()`, `size()`, `client_ip()`, `port()`, `id()`, `opcode()`, `do()`,
`bufsize()`, `server_ip()`, `server_port()`), its utilities `incidr(ip, cidr)` and `metadata(label)`,
the builtins `len`, `lower`, `upper`, `trim`, `trimPrefix`, `trimSuffix`, `replace`, `split`, `join`,
`hasPrefix`, `hasSuffix`, `int`, `string`, and `any`, `all`, `none`, `filter`, `map` whose second
argument is evaluated per element with the element as `#`. A name without `(` is a variable its user
declares (template's `var`). Anything else is a syntax error at load time, with the column.
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dnsserver.request import Request
from dnsserver.wire.views import meta_value


class ExprError(ValueError):
    """An expression that cannot be parsed (at load time) or evaluated (for one query)."""


@dataclass
class Env:
    """What an expression is evaluated against: the query, declared variables, extra functions."""

    req: Request
    vars: dict[str, object] = field(default_factory=dict)
    funcs: Mapping[str, Callable[..., object]] = field(default_factory=dict)
    item: object = None  # `#` inside any/all/none/filter/map


def _server_port(req: Request) -> str:
    # The server label is "dns://HOST:PORT" (CoreDNS's `server`): its port is the listener's.
    return req.server.rsplit(":", 1)[-1]


def _bufsize(req: Request) -> int:
    return req.max_size


QUERY: dict[str, Callable[[Request], object]] = {
    "type": lambda r: r.type_name,
    "name": lambda r: r.name,
    "class": lambda r: {1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}.get(r.qclass, f"CLASS{r.qclass}"),
    "proto": lambda r: "udp" if r.proto == "udp" else "tcp",  # DNS over TLS is TCP, as CoreDNS says
    "size": lambda r: r.wire_size,
    "client_ip": lambda r: r.client_ip,
    "port": lambda r: str(r.client_port),
    "id": lambda r: int(r.msg.header.id),
    "opcode": lambda r: int(r.msg.header.opcode),
    "do": lambda r: r.do,
    "bufsize": _bufsize,
    "server_ip": lambda r: r.local_ip,
    "server_port": _server_port,
}


def _incidr(ip: object, cidr: object) -> bool:
    try:
        addr = ipaddress.ip_address(str(ip).strip("[]"))
    except ValueError:
        raise ExprError("first argument is not an IP address") from None
    try:
        net = ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        raise ExprError(f"invalid CIDR address: {cidr}") from None
    return addr.version == net.version and addr in net


def _replace(s: object, old: object, new: object) -> str:
    return str(s).replace(str(old), str(new))


def _split(s: object, sep: object) -> list[str]:
    return str(s).split(str(sep))


def _join(items: object, sep: object = "") -> str:
    return str(sep).join(str(x) for x in _seq(items))


BUILTINS: dict[str, Callable[..., object]] = {
    "incidr": _incidr,
    "len": lambda x: len(x) if isinstance(x, (str, list, dict)) else _fail("len of a non-collection"),
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
    "trim": lambda s, chars=None: str(s).strip(None if chars is None else str(chars)),
    "trimPrefix": lambda s, p: str(s).removeprefix(str(p)),
    "trimSuffix": lambda s, p: str(s).removesuffix(str(p)),
    "hasPrefix": lambda s, p: str(s).startswith(str(p)),
    "hasSuffix": lambda s, p: str(s).endswith(str(p)),
    "replace": _replace,
    "split": _split,
    "join": _join,
    "int": lambda x: int(str(x)) if not isinstance(x, int) else x,
    "string": lambda x: _text(x),
}
CLOSURES = {"any", "all", "none", "filter", "map"}


def _fail(message: str) -> object:
    raise ExprError(message)


def _text(x: object) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    return "" if x is None else str(x)


def _seq(x: object) -> Sequence[object]:
    if not isinstance(x, list):
        raise ExprError("not an array")
    return x


# -- the tree --------------------------------------------------------------------------------------


class Node:
    """A node of a parsed expression."""

    def eval(self, env: Env) -> object:
        raise NotImplementedError


@dataclass
class Lit(Node):
    """A literal: string, integer, boolean or nil."""

    value: object

    def eval(self, env: Env) -> object:
        return self.value


@dataclass
class Var(Node):
    """A declared variable, or `#` inside a predicate."""

    name: str

    def eval(self, env: Env) -> object:
        if self.name == "#":
            return env.item
        return env.vars.get(self.name)


@dataclass
class Array(Node):
    """`[a, b, ...]`."""

    items: list[Node]

    def eval(self, env: Env) -> object:
        return [i.eval(env) for i in self.items]


@dataclass
class Call(Node):
    """A function call: a query function, a builtin, or one its user adds."""

    name: str
    args: list[Node]

    def eval(self, env: Env) -> object:
        if self.name in CLOSURES:
            return self._closure(env)
        args = [a.eval(env) for a in self.args]
        query = QUERY.get(self.name)
        if query is not None:
            return query(env.req)
        if self.name == "metadata":
            return meta_value(env.req.meta, _text(args[0]))
        fn = env.funcs.get(self.name) or BUILTINS[self.name]
        try:
            return fn(*args)
        except TypeError as e:
            raise ExprError(f"{self.name}: {e}") from None

    def _closure(self, env: Env) -> object:
        items = _seq(self.args[0].eval(env))
        pred = self.args[1]
        inner = Env(env.req, env.vars, env.funcs)
        results = []
        for it in items:
            inner.item = it
            results.append(pred.eval(inner))
        if self.name == "map":
            return results
        truths = [r is True for r in results]
        if self.name == "filter":
            return [it for it, t in zip(items, truths, strict=True) if t]
        if self.name == "any":
            return any(truths)
        if self.name == "all":
            return all(truths)
        return not any(truths)


@dataclass
class Unary(Node):
    """`!x` or `-x`."""

    op: str
    operand: Node

    def eval(self, env: Env) -> object:
        v = self.operand.eval(env)
        if self.op == "!":
            if not isinstance(v, bool):
                raise ExprError("! needs a boolean")
            return not v
        if not isinstance(v, int) or isinstance(v, bool):
            raise ExprError("- needs a number")
        return -v


@dataclass
class Logic(Node):
    """`a && b` or `a || b`."""

    op: str  # "&&" or "||": the right side is evaluated only when needed
    left: Node
    right: Node

    def eval(self, env: Env) -> object:
        a = self.left.eval(env)
        if not isinstance(a, bool):
            raise ExprError(f"{self.op} needs booleans")
        if (self.op == "&&") != a:
            return a
        b = self.right.eval(env)
        if not isinstance(b, bool):
            raise ExprError(f"{self.op} needs booleans")
        return b


@dataclass
class Cond(Node):
    """`a ? b : c`."""

    test: Node
    then: Node
    other: Node

    def eval(self, env: Env) -> object:
        return self.then.eval(env) if self.test.eval(env) is True else self.other.eval(env)


@dataclass
class Index(Node):
    """`a[i]`: an array element, a string's character, a map's value."""

    target: Node
    key: Node

    def eval(self, env: Env) -> object:
        t, k = self.target.eval(env), self.key.eval(env)
        if isinstance(t, (list, str)) and isinstance(k, int) and not isinstance(k, bool):
            return t[k] if -len(t) <= k < len(t) else _fail("index out of range")
        if isinstance(t, dict):
            return t.get(k)
        raise ExprError("cannot index this value")


def _compare(op: str, a: object, b: object) -> bool:
    if op == "==":
        return type(a) is type(b) and a == b
    if op == "!=":
        return not _compare("==", a, b)
    if isinstance(a, str) and isinstance(b, str):
        return _order(op, a, b)
    if isinstance(a, int) and isinstance(b, int) and _number(a) and _number(b):
        return _order(op, a, b)
    raise ExprError(f"{op} needs two numbers or two strings")


_ORDERS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _order(op: str, x: str | int, y: str | int) -> bool:
    return bool(_ORDERS[op](x, y))  # the callers checked that both are strings or both numbers


def _number(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _strings(op: str, a: object, b: object) -> tuple[str, str]:
    if not isinstance(a, str) or not isinstance(b, str):
        raise ExprError(f"{op} needs strings")
    return a, b


@dataclass
class Binary(Node):
    """Comparisons, membership, string tests and arithmetic."""

    op: str
    left: Node
    right: Node
    regex: re.Pattern[str] | None = None  # `matches` with a literal pattern: compiled once, at load

    def eval(self, env: Env) -> object:
        op, a, b = self.op, self.left.eval(env), self.right.eval(env)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            return _compare(op, a, b)
        if op in ("in", "not in"):
            found = (a in b) if isinstance(b, (list, dict)) else _fail(f"{op} needs an array or a map")
            return found if op == "in" else not found
        if op == "matches":
            s, pattern = _strings(op, a, b)
            rx = self.regex or _regex(pattern)
            return rx.search(s) is not None
        if op in ("contains", "startsWith", "endsWith"):
            s, t = _strings(op, a, b)
            return t in s if op == "contains" else s.startswith(t) if op == "startsWith" else s.endswith(t)
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            return a + b
        if not (_number(a) and _number(b)):
            raise ExprError(f"{op} needs numbers")
        x, y = int(a), int(b)  # type: ignore[call-overload]
        if op in ("/", "%") and y == 0:
            raise ExprError("division by zero")
        return {"+": x + y, "-": x - y, "*": x * y}[op] if op in "+-*" else x // y if op == "/" else x % y


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as e:  # a huge {n}, deep nesting: not re.error
        raise ExprError(f"bad regular expression {pattern!r}: {e}") from None


# -- the parser ------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<num>\d+)
  | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>&&|\|\||==|!=|<=|>=|[-+*/%<>!?:,()\[\]\#.])
)""",
    re.X,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}
_WORDS = {"and": "&&", "or": "||", "not": "!"}
MAX_DEPTH = 64  # parentheses, arrays and calls nested deeper are refused at load (Python's stack is finite)
_RELATIONS = ("==", "!=", "<", "<=", ">", ">=", "in", "matches", "contains", "startsWith", "endsWith")


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text[1:-1])


class _Parser:
    def __init__(self, text: str, variables: Sequence[str], functions: Sequence[str]) -> None:
        self.text = text
        self.variables = set(variables)
        self.functions = set(QUERY) | set(BUILTINS) | CLOSURES | {"metadata"} | set(functions)
        self.toks: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                if not text[pos:].strip():
                    break
                at = len(text) - len(text[pos:].lstrip())
                raise self.error(f"unexpected character {text[at]!r}", at)
            kind = m.lastgroup or ""
            value = m.group(kind)
            if kind == "name" and value in _WORDS:
                kind, value = "op", _WORDS[value]
            self.toks.append((kind, value, m.start(kind)))
            pos = m.end()
        self.i = 0
        self.closure_depth = 0
        self.depth = 0

    def error(self, message: str, pos: int | None = None) -> ExprError:
        if pos is None:
            pos = self.toks[self.i][2] if self.i < len(self.toks) else len(self.text)
        return ExprError(f"{message} (column {pos + 1} of {self.text!r})")

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.toks[j][:2] if j < len(self.toks) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise self.error(f"expected {value!r}, found {tok[1] or 'the end'!r}")
        if tok[0] == "end":
            raise self.error("unexpected end of the expression")
        self.i += 1
        return tok

    def parse(self) -> Node:
        if not self.toks:
            raise self.error("empty expression")
        node = self.ternary()
        if self.i < len(self.toks):
            raise self.error(f"unexpected {self.peek()[1]!r}")
        return node

    def ternary(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} deep")
        try:
            return self._ternary()
        finally:
            self.depth -= 1

    def _ternary(self) -> Node:
        node = self.logic("||")
        if self.peek() == ("op", "?"):
            self.take()
            then = self.ternary()
            self.take(":")
            return Cond(node, then, self.ternary())
        return node

    def logic(self, op: str) -> Node:
        node = self.logic("&&") if op == "||" else self.relation()
        while self.peek() == ("op", op):
            self.take()
            node = Logic(op, node, self.logic("&&") if op == "||" else self.relation())
        return node

    def relation(self) -> Node:
        node = self.additive()
        kind, value = self.peek()
        if kind == "op" and value == "!" and self.peek(1) == ("name", "in"):
            self.take()
            value = "not in"
        elif not (value in _RELATIONS and (kind == "op" or kind == "name")):
            return node
        self.take()
        right = self.additive()
        regex = _literal_regex(right, self) if value == "matches" else None
        return Binary(value, node, right, regex)

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.peek() in (("op", "+"), ("op", "-")):
            node = Binary(self.take()[1], node, self.multiplicative())
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while self.peek() in (("op", "*"), ("op", "/"), ("op", "%")):
            node = Binary(self.take()[1], node, self.unary())
        return node

    def unary(self) -> Node:
        ops: list[str] = []
        while self.peek() in (("op", "!"), ("op", "-")):
            ops.append(self.take()[1])  # a loop, not recursion: `!!!!...` cannot exhaust the stack
        node = self.postfix()
        for op in reversed(ops):
            node = Unary(op, node)
        return node

    def postfix(self) -> Node:
        node = self.primary()
        while self.peek() == ("op", "["):
            self.take()
            node = Index(node, self.ternary())
            self.take("]")
        return node

    def primary(self) -> Node:
        kind, value = self.peek()
        pos = self.toks[self.i][2] if self.i < len(self.toks) else len(self.text)
        if kind in ("num", "str"):
            self.take()
            return Lit(int(value) if kind == "num" else _unquote(value))
        if (kind, value) == ("op", "("):
            self.take()
            node = self.ternary()
            self.take(")")
            return node
        if (kind, value) == ("op", "["):
            self.take()
            return Array(self.items("]"))
        if (kind, value) == ("op", "#"):
            self.take()
            if not self.closure_depth:
                raise self.error("# outside of a predicate", pos)
            return Var("#")
        if kind == "name":
            return self.name(value, pos)
        raise self.error(f"unexpected {value or 'end of the expression'!r}", pos)

    def items(self, close: str, closure: str = "") -> list[Node]:
        """Comma-separated expressions up to `close` (consumed); the second is a predicate of `closure`."""
        out: list[Node] = []
        while self.peek() != ("op", close):
            inside = bool(closure) and len(out) == 1
            self.closure_depth += inside
            out.append(self.ternary())
            self.closure_depth -= inside
            if self.peek() != ("op", close):
                self.take(",")
        self.take(close)
        return out

    def name(self, value: str, pos: int) -> Node:
        self.take()
        if value in ("true", "false", "nil"):
            return Lit({"true": True, "false": False, "nil": None}[value])
        if self.peek() == ("op", "("):
            return self.call(value, pos)
        if value not in self.variables:
            raise self.error(f"unknown name {value}", pos)
        return Var(value)

    def call(self, name: str, pos: int) -> Node:
        if name not in self.functions:
            raise self.error(f"unknown function {name}", pos)
        self.take("(")
        args = self.items(")", name if name in CLOSURES else "")
        if name in QUERY and args:
            raise self.error(f"{name}() takes no arguments", pos)
        if name in CLOSURES and len(args) != 2:
            raise self.error(f"{name} takes an array and a predicate", pos)
        if name == "metadata" and len(args) != 1:
            raise self.error("metadata takes one label", pos)
        return Call(name, args)


def _literal_regex(node: Node, parser: _Parser) -> re.Pattern[str] | None:
    if isinstance(node, Lit) and isinstance(node.value, str):
        try:
            return re.compile(node.value)
        except (re.error, OverflowError, RecursionError) as e:  # a huge {n}, deep nesting
            raise parser.error(f"bad regular expression {node.value!r}: {e}") from None
    return None


def compile_expr(text: str, variables: Sequence[str] = (), functions: Sequence[str] = ()) -> Node:
    """Parse `text`; `variables` and `functions` are the names its user adds to the language.
    Raises ExprError naming the column of the mistake."""
    return _Parser(text, variables, functions).parse()


def truth(node: Node, env: Env) -> bool:
    """`node` evaluated as a condition: only a boolean true is true; an error of any kind is false, as in
    CoreDNS (a failing expression never fails the query)."""
    try:
        return evaluate(node, env) is True
    except ExprError:
        return False


def evaluate(node: Node, env: Env) -> object:
    """`node`'s value for `env`. Raises ExprError, whatever went wrong (a bad operand, a bad address)."""
    try:
        return node.eval(env)
    except ExprError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as e:
        raise ExprError(str(e)) from None
