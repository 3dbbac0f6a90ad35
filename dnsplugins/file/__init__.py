"""file: serve zones from RFC 1035 master files, authoritatively.

## Syntax

```
file DBFILE [ZONES...] {
    reload DURATION
    reload_by_mtime
    fallthrough [ZONES...]
}
```

* **DBFILE** is the zone file; a relative path is taken from the Corefile's directory.
* **ZONES** are the zones read from it, each with its own origin (the same file may serve several);
  default the server block's zones. `file db.example.org` in a `.` block reads the file with origin
  `.`, which is rarely what is meant: name the zone.
* `reload` is how often the file is read again, default 1m; `0` turns it off. The new contents are
  used only when the SOA serial changed. A file that no longer parses is reported (file and line)
  and the zone already loaded stays in service.
* `reload_by_mtime`: read the file again only when its modification time changed, and then use it
  whatever its serial.
* `fallthrough` passes names that do not exist in the zone (NXDOMAIN) to the next plugin, for the
  ZONES given or all.

`file` may be used several times in a block, once per file. A DBFILE that cannot be opened at start
is an error when `reload` is 0; otherwise it is a warning, the zone answers SERVFAIL, and the file
is tried again at every reload.

Answers are authoritative (AA set):

* the SOA and NS records of the apex; an NS answer carries the addresses of in-zone name servers
  in the additional section, and MX and SRV answers those of their in-zone targets;
* positive answers carry the apex NS records in the authority section;
* a name that does not exist gets NXDOMAIN and one that exists without the type asked (including an
  empty non-terminal) NODATA, both with the SOA in the authority section, its TTL lowered to the
  SOA's MINIMUM if that is smaller (RFC 2308);
* a CNAME is followed inside the zone, up to 8 more links: the answer holds the chain and the
  target's records of the type asked. A loop, a target outside the zone or one that does not
  exist ends the chain and the answer holds what was found;
* a wildcard (`*.example.org.`) answers for names that do not exist below its parent, with the
  name asked as owner; names that exist, empty non-terminals included, are not covered (RFC 4592);
* a name at or below a delegation (NS records below the apex) gets a referral: NOERROR, AA clear,
  the NS records in the authority section and their glue in the additional section. A DS query for
  the delegated name itself is answered from this zone.

With the DO bit, the RRSIG records of a pre-signed zone accompany the records they cover (NSEC
denial of existence is not synthesised). AXFR and IXFR are refused here; outgoing transfers are the
*transfer* plugin's job, which takes the records from this one.

Zone files: `$ORIGIN`, `$TTL`, `$INCLUDE FILE [ORIGIN]` (FILE relative to the including file), `@`,
relative names, a blank owner meaning the previous one, parentheses across lines, `;` comments,
quoted strings, TTL and class in either order (class IN only), TTL units (`1h30m`). A record
without a TTL gets `$TTL`, else the last TTL written, else the SOA's MINIMUM. Types: SOA, NS, A,
AAAA, CNAME, PTR, MX, TXT, SPF, SRV, CAA, HINFO, DS, DNSKEY, RRSIG, NSEC, TLSA, SSHFP, NAPTR,
HTTPS, LOC, RP, and any type in the RFC 3597 form `TYPE65280 \\# 2 ABCD`. A mistake (unknown type,
bad data, no SOA, a record outside the zone, an unclosed parenthesis, a bad TTL) is reported as
`FILE:LINE - plugin/file: ...`.

Metrics: `coredns_file_entries{dns_name}`, the number of records of each zone loaded.

## Examples

```corefile
example.org {
    file db.example.org
}
```

```corefile
. {
    file db.example.org example.org {
        reload 30s
        fallthrough
    }
    file db.example.net example.net
    transfer example.org {
        to 10.240.1.1 192.0.2.0/24
    }
    forward . 9.9.9.9
}
```
"""

from __future__ import annotations

from corefile import Dispenser
from dnsplugins.file.config import FileConfig, Source, parse
from dnsplugins.file.file import File, first_load
from dnsserver.plugin import SetupContext


def setup(d: Dispenser, ctx: SetupContext) -> File:
    cfg = parse(d, ctx)
    for src in cfg.sources:
        first_load(src)
    return File(cfg)


__all__ = ["File", "FileConfig", "Source", "parse", "setup"]
