"""view: serve a query in this server block only when an expression about it holds (split DNS).

## Syntax

```
view NAME {
    expr EXPRESSION
}
```

* **NAME** names the view: it is published as the metadata `view/name` of the queries the block
  serves (log's `{/view/name}`, acl's metrics).
* `expr` **EXPRESSION** must be true for the block to serve the query. Several `expr` lines must all
  be true. An expression that fails for a query (say `incidr` of a malformed address) counts as
  false, and so does any result but the boolean true.

Server blocks that serve the same zone on the same port are tried top to bottom: the first whose
view admits the query serves it, and a block without a view admits every query, so a catch-all block
written before the filtered ones hides them; write it last. When no block of the zone admits the
query, the next shorter zone is tried, as for a zone that is not served. Two blocks without a view on
the same zone and port remain an error.

The language is the subset of expr-lang that CoreDNS's examples use; functions of the query:
`client_ip()`, `port()`, `server_ip()`, `server_port()`, `name()` (lower case, with the final dot),
`type()`, `class()`, `proto()` (`udp` or `tcp`), `size()`, `bufsize()`, `do()`, `id()`, `opcode()`; and
`incidr(IP, CIDR)`, `metadata(LABEL)`. Operators: `==`, `!=`, `<`, `<=`, `>`, `>=`, `&&` (`and`),
`||` (`or`), `!` (`not`), `in` with an array `['A', 'AAAA']`, `matches` with a regular expression,
`contains`, `startsWith`, `endsWith`, parentheses. A string may be written in single or double
quotes; in a Corefile the whole expression is best quoted when it holds `#` or `{`. A name or
function the language does not know is an error at load time.

Queries of a zone served by a block with a view are never answered on the hot path nor the relay
path: those remember, per question, which block answers it, and the block depends on the client.
Every such query runs the selection above and its block's chain. The other zones keep both paths.

This plugin can only be used once per Server Block.

## Examples

Split DNS by the client's network: clients in 127.0.0.0/24 get 1.1.1.1, others 3.3.3.3.

```corefile
. {
    view internal {
        expr incidr(client_ip(), '127.0.0.0/24')
    }
    hosts {
        1.1.1.1 test
    }
}

. {
    hosts {
        3.3.3.3 test
    }
}
```

Only A and AAAA queries for `example.org` reach the first block:

```corefile
example.org {
    view addresses {
        expr type() in ['A', 'AAAA'] && name() matches '^(www[.])?example[.]org[.]$'
    }
    whoami
}

example.org {
    hosts {
        10.0.0.1 www.example.org
    }
}
```
"""

from __future__ import annotations

from corefile import Dispenser
from dnsplugins.view.expression import Env, ExprError, Node, compile_expr, truth
from dnsserver.plugin import Plugin, SetupContext
from dnsserver.request import Request


class View(Plugin):
    """`view`: chooses whether its block serves a query (dnsserver's QueryFilter role); in the chain it
    only passes queries on."""

    name = "view"
    fast_safe = True  # it never answers: the block's selection, not the chain, is where it acts

    def __init__(self, view_name: str, exprs: list[Node]) -> None:
        self._name = view_name
        self.exprs = exprs

    @property
    def view_name(self) -> str:
        return self._name

    def admits(self, req: Request) -> bool:
        env = Env(req)
        if all(truth(e, env) for e in self.exprs):
            req.meta["view/name"] = self._name
            return True
        return False


def setup(d: Dispenser, ctx: SetupContext) -> View:
    d.next()  # once per block: the server checks that before setup
    args = d.remaining_args()
    if len(args) != 1:
        raise d.arg_err()
    exprs: list[Node] = []
    while d.next_block():
        if d.val() != "expr":
            raise d.unknown_property()
        text = " ".join(d.remaining_args())
        try:
            exprs.append(compile_expr(text))
        except ExprError as e:
            raise d.err(str(e)) from None
    return View(args[0], exprs)
