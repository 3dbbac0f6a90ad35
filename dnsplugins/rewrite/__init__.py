"""rewrite: change the question before the rest of the chain sees it, and map the reply back.

The client never notices: whatever the rules did to the question, the reply carries the question as
the client asked it, and (with response rules) the names in the reply are mapped back as well.
`rewrite` runs before `cache`, so the cache stores answers under the rewritten question.

## Syntax

```
rewrite [continue|stop] FIELD [TYPE] (FROM TO | TTL) [OPTIONS]
rewrite [continue|stop] {
    FIELD [TYPE] (FROM TO | TTL) [OPTIONS]
}
```

* `stop` (the default) ends the rule list at this rule when it matches; `continue` goes on with the
  next rule, which then sees the question as this rule left it. Rules are tried in Corefile order,
  and the directive may be given any number of times in a block.
* The block form holds one rule spread over lines: its lines are read as if they were written on
  the directive's line (`name ...` on one line, `answer ...` on the next).
* **FIELD** is what is rewritten:
  * `name [TYPE] FROM TO [OPTIONS]`: the query name. TYPE is how FROM matches the (lower-cased)
    name: `exact` (the default), `prefix`, `suffix`, `substring` or `regex`. For the first four,
    FROM and TO are made lower case and fully qualified (so `prefix foo bar` matches the label
    `foo.` at the start and puts `bar.` in its place); `substring` replaces every occurrence. A
    `regex` FROM is a regular expression searched for in the name; TO replaces the whole name and
    may use `{0}` (the whole match), `{1}`, `{2}`, ... for the groups.
  * `type FROM TO`: the query type (`rewrite type ANY HINFO`).
  * `class FROM TO`: the query class (`IN`, `CH`, `HS`, `CS`, `NONE`, `ANY`). A block refuses
    non-IN queries before any plugin runs unless `chaos` or `forward` is loaded, so
    `rewrite class CH IN` needs one of those in the block.
  * `ttl [TYPE] NAME TTL`: when the query name matches NAME (TYPE as for `name`), every TTL in the
    reply is set to TTL, or clamped into it when TTL is a range: `MIN-MAX`, `MIN-` (no upper
    bound), `-MAX` (from 0).
  * `rcode [TYPE] NAME FROM TO`: when the query name matches NAME and the reply's RCODE is FROM,
    it becomes TO. FROM and TO are names (`SERVFAIL`) or numbers; TO must fit the header (0-15).
  * `cname [TYPE] FROM TO`: a CNAME in the answer whose target matches FROM (TYPE as for `name`,
    default `exact`) points to TO instead, and TO is looked up (same type, through the rest of
    this block's chain) to replace what followed the CNAME. This rule matches every query.
  * `edns0` is not supported yet and is refused.
* **OPTIONS** (for `name` only, after an explicit TYPE): how names in the reply are mapped back.
  * `answer auto`: names equal to or under the rewritten name become the name asked again, in
    owner names and in the names inside records. For `suffix`, any name ending in TO gets FROM back
    in its place. An `exact` rule always does this, with or without the option.
  * `answer name FROM TO`: owner names matching the regular expression FROM are replaced by TO.
  * `answer value FROM TO`: the same for the names inside CNAME, DNAME, SOA (primary server),
    SRV, MX, NAPTR, NS and PTR records.

  Several options may follow one another; after the first, the word `answer` may be left out.
  `answer auto` cannot be combined with `answer name`.

Response rules apply to the answer, authority and additional sections, and the rules that matched
are undone in reverse order, so a chain of `continue` rules unwinds back to the name asked. Names
are matched in lower case (a regular expression sees `foo.example.org.`, trailing dot included, so
write patterns in lower case); the question in the reply, and a name mapped back to it, keep the
client's spelling. A rule that produces an invalid name (an empty label, a label over 63 bytes, a
name over 255) makes the query fail with SERVFAIL, and the reason is logged.

Blocks that use `rewrite` are not answered from the cache's stored wire answers without running
the chain: a rewritten query must always be rewritten.

## Examples

Serve a Kubernetes service under a second name; the answer says `foo.example.com.`:

```corefile
. {
    rewrite name exact foo.example.com foo.default.svc.cluster.local
    hosts {
        10.96.0.10 foo.default.svc.cluster.local
    }
}
```

Map a whole domain onto a namespace and back, and keep answers for it at least 30 seconds:

```corefile
. {
    rewrite continue name regex (.*)\\.my\\.domain {1}.default.svc.cluster.local answer auto
    rewrite ttl suffix default.svc.cluster.local 30-
    whoami
}
```

The block form, with an explicit answer mapping:

```corefile
. {
    rewrite stop {
        name regex (.*)-(us-west-1)\\.example\\.org {1}.service.{2}.consul
        answer name (.*)\\.service\\.(us-west-1)\\.consul {1}-{2}.example.org
    }
    whoami
}
```
"""

from __future__ import annotations

from corefile import Dispenser
from dnsplugins.rewrite.config import parse, ttl_range
from dnsplugins.rewrite.rewrite import Rewrite, private_copy
from dnsplugins.rewrite.rules import RewriteError, dname_target, valid_name
from dnsserver.plugin import SetupContext


def setup(d: Dispenser, ctx: SetupContext) -> Rewrite:
    return Rewrite(parse(d), ctx)


__all__ = ["Rewrite", "RewriteError", "dname_target", "parse", "private_copy", "setup", "ttl_range", "valid_name"]
