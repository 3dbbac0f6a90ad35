"""forward: send queries to upstream resolvers over UDP, TCP or DNS over TLS, and relay their replies.

Connections to upstreams are kept and reused, and the health of each upstream is checked in band:
when an exchange with an upstream fails, that upstream is probed with `. IN NS` every health-check
interval until it answers again (any rcode counts as an answer). An upstream whose probes failed
more than `max_fails` times in a row is left out of the rotation until a probe succeeds. If every
upstream is down, health checking itself is assumed broken and a random upstream is tried anyway
(unless `failfast_all_unhealthy_upstreams`).

## Syntax

```
forward FROM TO... {
    except IGNORED_NAMES...
    force_tcp
    prefer_udp
    expire DURATION
    max_age DURATION
    max_idle_conns INTEGER
    read_timeout DURATION
    max_fails INTEGER
    max_connect_attempts INTEGER
    tls [CERT KEY] [CA]
    tls_servername NAME
    policy random|round_robin|sequential
    health_check DURATION [no_rec] [domain FQDN]
    max_concurrent MAX
    next RCODE...
    next_on_nodata
    failover RCODE...
    failfast_all_unhealthy_upstreams
    source_address IP
}
```

* **FROM** is the zone whose names are forwarded (the name itself and everything below it). A
  CIDR that stands for several reverse zones uses only the first, with a warning.
* **TO...** are up to 15 upstreams: `IP[:PORT]` or `dns://IP[:PORT]` (plain DNS, port 53),
  `tls://IP[:PORT]` (DNS over TLS, port 853; `tls://IP%NAME` gives the name the upstream's
  certificate must carry), or the path of a resolv.conf-style file, whose `nameserver` lines are
  used (plain DNS, port 53; a relative path is taken from the Corefile's directory).
* `except` lists zones that are not forwarded but passed to the next plugin; a query for FROM
  itself is always forwarded.
* By default a query goes upstream over the transport it came in on. `force_tcp` always uses TCP;
  `prefer_udp` always starts with UDP and repeats a truncated (TC) reply's query over TCP. Without
  `prefer_udp` a truncated reply is passed to the client as it is. `force_tcp` wins over both.
* `expire` closes a pooled TCP/TLS connection idle that long (default 10s; 0 turns pooling off);
  `max_age` closes one that old whatever its use (default none; not less than `expire`);
  `max_idle_conns` caps the idle connections kept per upstream (default 0, no cap).
* `read_timeout` is how long one try waits for its reply (default 2s). The whole query never takes
  more than 5s: when the upstreams do not answer in time the client gets SERVFAIL, never NXDOMAIN.
* `max_fails` (default 2) is how many failed health checks in a row mark an upstream down; 0 never
  marks it down and never health checks.
* `max_connect_attempts` caps the tries (failed exchanges) of one query; default twice the number
  of upstreams, 0 means only the 5s deadline applies.
* `tls` sets up DNS over TLS for the `tls://` upstreams: without arguments the system CAs verify
  the upstream; with **CA** only that CA does; **CERT KEY** adds a client certificate.
  `tls_servername` is the name checked in every `tls://` upstream's certificate (by default the
  upstream's IP address must be in it); it cannot be combined with `tls://IP%NAME`.
* `policy` orders the upstreams for each query: `random` (default), `round_robin`, `sequential`.
* `health_check` sets the probe interval (default 0.5s); `no_rec` clears RD in the probe;
  `domain` probes `FQDN IN NS` instead of the root.
* `max_concurrent` answers REFUSED to queries beyond MAX in flight in this stanza (not a health
  failure; counted in `coredns_forward_max_concurrent_rejects_total`).
* `next` hands a reply with one of these rcodes over to the next `forward` stanza of the block
  instead of the client; `next_on_nodata` does the same for an empty NOERROR. The last stanza
  always returns what it got.
* `failover` tries the next upstream when one replies with one of these rcodes (not NOERROR);
  once every upstream has been asked, the last reply is returned.
* `failfast_all_unhealthy_upstreams` answers SERVFAIL when every upstream is down.
* `source_address` is the local address the queries are sent from.

Several `forward` lines in one server block are tried in the order written: a query goes to the
first whose FROM and `except` cover it, and only a query no stanza takes (or that the last one's
`next` cannot hand on) reaches the plugins after forward.

The reply's ID is the client's. A reply whose question is not the query's gives the client
FORMERR. Non-IN classes are forwarded too.

Metrics: `coredns_proxy_request_duration_seconds{proxy_name="forward",to,rcode}`,
`coredns_proxy_healthcheck_failures_total{proxy_name,to}`,
`coredns_proxy_conn_cache_hits_total{proxy_name,to,proto}`,
`coredns_proxy_conn_cache_misses_total{proxy_name,to,proto}` (proto `udp`, `tcp` or `tcp-tls`),
`coredns_forward_healthcheck_broken_total` and `coredns_forward_max_concurrent_rejects_total`.

## Examples

```corefile
example.org {
    forward . 127.0.0.1:9005
}
```

```corefile
. {
    forward . 10.0.0.10 10.0.0.11:1053 [2001:db8::1]:53 {
        except internal.example.org
        policy sequential
        health_check 2s no_rec
    }
}
```

```corefile
. {
    forward . tls://9.9.9.9 tls://149.112.112.112 {
        tls_servername dns.quad9.net
        health_check 5s
    }
}
```

```corefile
. {
    forward . 10.0.0.53 {
        next NXDOMAIN
    }
    forward . 8.8.8.8 8.8.4.4
}
```
"""

from __future__ import annotations

from corefile import Dispenser
from dnsplugins.forward.config import ForwardConfig, parse
from dnsplugins.forward.forward import Forward, NoHealthyUpstream, Stanza, upstream_query
from dnsplugins.forward.upstream import UpstreamError
from dnsserver.plugin import SetupContext


def setup(d: Dispenser, ctx: SetupContext) -> Forward:
    return Forward(parse(d, ctx))


__all__ = ["Forward", "ForwardConfig", "NoHealthyUpstream", "Stanza", "UpstreamError", "parse", "setup",
           "upstream_query"]
