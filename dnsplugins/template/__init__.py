"""template: answer queries with records written as Go-style templates of the query.

## Syntax

```
template CLASS TYPE [ZONE...] {
    match REGEX...
    var NAME EXPRESSION
    expr EXPRESSION
    answer RR
    additional RR
    authority RR
    rcode CODE
    ederror EXTENDED_ERROR_CODE [EXTRA_REASON]
    fallthrough [FALLTHROUGH-ZONE...]
    upstream
}
```

* **CLASS** and **TYPE** are the query class (`IN`, `CH`, ... or `ANY`) and type (`A`, `PTR`, ... or
  `ANY`) the template answers; a query of another class or type goes to the next template or plugin.
* **ZONE** are the zones it answers for; default the server block's zones.
* `match` **REGEX** are regular expressions (Go's syntax; `(?P<name>...)` names a group) searched for
  in the query name, lower case with its final dot. The first that matches wins; none given is `.*`.
  A pattern may be at most 10000 characters.
* `answer`, `additional`, `authority` **RR** are records in zone-file form (`NAME TTL CLASS TYPE
  RDATA`, TTL 3600 and class IN when left out, names relative to the root), each a template; several
  may be given, on one line or several, and each renders one record.
* `var` **NAME** **EXPRESSION** sets `.Var.NAME` for the records, evaluated per matching query, and
  later expressions may use NAME. `expr` **EXPRESSION** must be true for the query to match, else it is
  treated as if no regex had matched. The language is view's (see the view plugin), with
  `group(NAME)` or `group(INDEX)`: a capture group of the matching regex, "" if there is none.
* `rcode` **CODE** is the reply's rcode (`NOERROR`, the default, `NXDOMAIN`, `SERVFAIL`, ...). With
  `SERVFAIL` no records are sent.
* `ederror` adds an extended DNS error (RFC 8914) **EXTENDED_ERROR_CODE** (0 to 65535) with the
  optional **EXTRA_REASON** text to the reply's OPT (when the client sent one).
* `fallthrough`: when the zone matches but no regex (or `expr`) does, try the next template, then
  the next plugin (for the **FALLTHROUGH-ZONE**s given, or all). Without it such a query gets SERVFAIL.
* `upstream` is accepted and ignored, as CoreDNS does: a CNAME answered to an A or AAAA query is
  always followed, by asking this very server for the target (its records are added to the answer).

The template may be written several times in a block; the templates are tried in order.

## Templates

Each record is a template of Go's text/template form: text with actions `{{ ... }}`. The data:
`.Zone` (the zone matched), `.Name` (the query name, lower case), `.Class`, `.Type` (the query's, or
the template's when the query's is ANY), `.Match` (the whole match and each group: `index .Match 1`),
`.Group` (groups by name and number: `.Group.name`), `.Question` (`.Question.Name`, `.Qtype`,
`.Qclass`), `.Message` (`.Message.Id`, `.Opcode`, `.Question`, ...), `.Remote` (the client's IP
address), `.Var` (the `var`s), `.Meta "LABEL"` (a metadata value, "" when none is set). Functions:
`parseInt STRING BASE BITS` (an unsigned integer, as Go's strconv.ParseUint) and Go's builtins
`index`, `len`, `print`, `printf`, `println`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `and`, `or`, `not`,
`slice`; pipelines with `|` and parentheses. Control actions (`if`, `range`, `with`, ...), variables
(`$x`), and fields or functions the data does not have are errors at load time. Write `{{ $x }}`
never `{{$x}}`: `{$x}` is an environment variable in a Corefile.

A record that cannot be rendered or read gives SERVFAIL (and counts in
`coredns_template_template_failures_total` or `coredns_template_rr_failures_total`);
`coredns_template_matches_total` counts matched queries.

The template's answers depend on the query (and may on the client: `.Remote`, `.Meta`), so it is
never skipped: a block whose first plugin that must see queries is template never answers from stored
wire answers (the hot path), and a later plugin's stored answers (hosts, kubernetes) never bypass it.
With `cache` in the block (it runs before template), cache stores template's answers per question as
CoreDNS's does.

## Examples

Everything NXDOMAIN:

```corefile
. {
    template ANY ANY {
        rcode NXDOMAIN
    }
}
```

`ip-a-b-c-d.example` to the address a.b.c.d, and its reverse:

```corefile
. {
    template IN A example {
        match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
        fallthrough
    }
    template IN PTR in-addr.arpa {
        match ^(?P<d>[0-9]*)[.](?P<c>[0-9]*)[.](?P<b>[0-9]*)[.](?P<a>[0-9]*)[.]in-addr[.]arpa[.]$
        answer "{{ .Name }} 60 IN PTR ip-{{ .Group.a }}-{{ .Group.b }}-{{ .Group.c }}-{{ .Group.d }}.example."
    }
    whoami
}
```

A hexadecimal form, a variable and a condition, and the `.invalid` TLD refused with a reason:

```corefile
. {
    template IN A example {
        match "^ip0a00(?P<c>[a-f0-9]{2})(?P<d>[a-f0-9]{2})[.]example[.]$"
        answer "{{ .Name }} 60 IN A 10.0.{{ parseInt .Group.c 16 8 }}.{{ parseInt .Group.d 16 8 }}"
        fallthrough
    }
    template IN A example.com {
        match ^(?P<ip>[0-9]{1,3}(-[0-9]{1,3}){3})[.]example[.]com[.]$
        var ip replace(group('ip'), '-', '.')
        expr "any(['10.0.0.0/8', '192.168.0.0/16'], incidr(ip, #))"
        answer "{{ .Name }} 60 IN A {{ .Var.ip }}"
        fallthrough
    }
    template ANY ANY invalid {
        rcode NXDOMAIN
        authority "invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"
        ederror 21 "Blocked according to RFC2606"
    }
    whoami
}
```

A CNAME, followed through this server:

```corefile
. {
    template IN ANY foogle.com {
        match "^foogle[.]com[.]$"
        answer "foogle.com 60 IN CNAME google.com"
    }
    hosts {
        10.0.0.7 google.com
    }
}
```
"""

from __future__ import annotations

from corefile import Dispenser
from dnsplugins.template.config import parse
from dnsplugins.template.template import Template
from dnsserver.plugin import SetupContext


def setup(d: Dispenser, ctx: SetupContext) -> Template:
    return Template(parse(d, ctx), ctx)
