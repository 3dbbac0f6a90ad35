"""loadbalance: shuffle the address records of each reply, so clients spread over the addresses.

## Syntax

```
loadbalance [round_robin | weighted WEIGHTFILE] {
    reload DURATION
    prefer CIDR...
}
```

* `round_robin` (the default) puts the records of every section (answer, authority, additional) in
  this order: CNAMEs first (some stub resolvers, glibc among them, need them before the addresses
  they lead to), then the other types as they came, then the A and AAAA records in random order,
  then the MX records in random order.
* `weighted` **WEIGHTFILE** leaves the order alone except for the first A/AAAA record of the answer
  and additional sections of A, AAAA and SRV replies: that one is chosen at random with the weights
  of the file, and the CNAMEs still go first. A relative path is taken from the Corefile's directory.
  `reload` (only with `weighted`) is how often the file is checked for changes, default 30s, 0 to
  never; while it is not 0 a missing file only gives a warning.
* `prefer` moves the A/AAAA records whose address is in one of the CIDRs to the front of the answer
  and additional sections (the first CIDR's addresses first), after the shuffle; the order inside
  each group is the shuffled one. Then come the MX records and the other types.

Only NOERROR replies are touched, and never zone transfers (AXFR, IXFR).

The weight file has a domain name on a line of its own followed by `IP WEIGHT` lines for it, with
weights 1 to 255; an address with no weight counts as 1. `#` starts a comment line:

```
www.example.com
100.64.1.1 3
100.64.1.2 1
```

## Examples

```corefile
. {
    loadbalance
    hosts {
        192.0.2.1 www.example.org
        192.0.2.2 www.example.org
    }
}
```

```corefile
example.org {
    loadbalance round_robin {
        prefer 10.0.0.0/8 fd00::/8
    }
    whoami
}
```

```corefile
example.org {
    loadbalance weighted example.org.weights {
        reload 10s
    }
    whoami
}
```
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from dnslib import RR, DNSRecord

from corefile import CorefileError, Dispenser, Token
from dnsserver.durations import parse_duration
from dnsserver.logs import plugin_log
from dnsserver.periodic import Periodic
from dnsserver.plugin import Next, Plugin, SetupContext
from dnsserver.request import Request
from dnsserver.wire.consts import TYPE_A, TYPE_AAAA, TYPE_AXFR, TYPE_CNAME, TYPE_IXFR, TYPE_MX, TYPE_SRV

log = plugin_log("loadbalance")

_ADDRESS = frozenset({TYPE_A, TYPE_AAAA})
ROUND_ROBIN, WEIGHTED = "round_robin", "weighted"
DEFAULT_WEIGHT_RELOAD = 30.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# domain (lower-case FQDN) -> address (canonical text) -> weight
Weights = dict[str, dict[str, int]]


@dataclass
class LoadBalanceConfig:
    """The `loadbalance` directive parsed: policy, weight file, preferred networks."""

    policy: str = ROUND_ROBIN
    weight_file: str = ""
    reload: float = DEFAULT_WEIGHT_RELOAD
    prefer: list[Network] = field(default_factory=list)
    # Where `weighted` was written, for errors found when the file is read.
    where: Token | None = field(default=None, compare=False, repr=False)

    def error(self, message: str) -> CorefileError:
        file, line = (self.where.file, self.where.line) if self.where else ("", 0)
        return CorefileError(file, line, f"plugin/loadbalance: {message}")


def parse_weights(text: str, source: str) -> Weights:
    """A weight file's contents; ValueError names the bad line."""
    out: Weights = {}
    domain = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) == 1:
            if _ip(fields[0]) is not None:
                raise ValueError(f'wrong domain name:"{fields[0]}" in weight file {source}. '
                                 "(Maybe a missing weight value?)")
            domain = fields[0].lower().rstrip(".") + "."
            out.setdefault(domain, {})
        elif len(fields) == 2:
            ip = _ip(fields[0])
            if ip is None:
                raise ValueError(f'wrong IP address:"{fields[0]}" in weight file {source}')
            if not (fields[1].isascii() and fields[1].isdigit()) or not 1 <= int(fields[1]) <= 255:
                raise ValueError(f'wrong weight value:"{fields[1]}" in weight file {source}')
            if not domain:
                raise ValueError(f"missing domain name in weight file {source}")
            out[domain].setdefault(ip, int(fields[1]))
        else:
            raise ValueError(f'could not parse weight line:"{line}" in weight file {source}')
    return out


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _split(records: Sequence[RR]) -> tuple[list[RR], list[RR], list[RR], list[RR]]:
    cname: list[RR] = []
    address: list[RR] = []
    mx: list[RR] = []
    rest: list[RR] = []
    for r in records:
        t = r.rtype
        if t in _ADDRESS:
            address.append(r)
        elif t == TYPE_CNAME:
            cname.append(r)
        elif t == TYPE_MX:
            mx.append(r)
        else:
            rest.append(r)
    return cname, address, mx, rest


class LoadBalance(Plugin):
    """`loadbalance`: shuffles (or weighs, or prefers) the address records of each reply."""

    name = "loadbalance"
    fast_shuffle = True

    def __init__(self, config: LoadBalanceConfig, weights: Weights | None = None,
                 rng: random.Random | None = None) -> None:
        self.config = config
        # Plain round robin is a shuffle of address records, which the hot path can do on wire bytes.
        self.fast_safe = config.policy == ROUND_ROBIN and not config.prefer
        self.rng = rng or random.Random()
        self.weights: Weights = weights or {}
        self._digest = b""
        self._periodic = Periodic(lambda: self.config.reload, self._reload_weights, "plugin/loadbalance")

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        reply = await next(req)
        if reply is None or reply.header.rcode != 0 or req.qtype in (TYPE_AXFR, TYPE_IXFR):
            return reply
        self.rearrange(req.qtype, reply)
        return reply

    def rearrange(self, qtype: int, reply: DNSRecord) -> None:
        """Reorder `reply`'s sections in place, by the configured policy and then `prefer`."""
        if self.config.policy == WEIGHTED:
            if qtype in (TYPE_A, TYPE_AAAA, TYPE_SRV):
                reply.rr = self.weighted(reply.rr)
                reply.ar = self.weighted(reply.ar)
        else:
            reply.rr = self.round_robin(reply.rr)
            reply.auth = self.round_robin(reply.auth)
            reply.ar = self.round_robin(reply.ar)
        if self.config.prefer:
            reply.rr = self.preferred(reply.rr)
            reply.ar = self.preferred(reply.ar)

    def round_robin(self, records: list[RR]) -> list[RR]:
        if len(records) <= 1:
            return records
        first = records[0].rtype
        if first in _ADDRESS and all(r.rtype == first for r in records):
            out = list(records)  # the common case: one address RRset, nothing to sort
            self.rng.shuffle(out)
            return out
        cname, address, mx, rest = _split(records)
        self.rng.shuffle(address)
        self.rng.shuffle(mx)
        return cname + rest + address + mx

    def weighted(self, records: list[RR]) -> list[RR]:
        cname, address, mx, rest = _split(records)
        if not address:
            return records
        top = self._pick(address)
        if top:
            address[0], address[top] = address[top], address[0]
        return cname + rest + address + mx

    def _pick(self, address: list[RR]) -> int:
        """The index of the address to put first, drawn with the weight file's odds."""
        scored: list[tuple[int, int]] = []
        for i, r in enumerate(address):
            owner = str(r.rname).lower()
            scored.append((self.weights.get(owner, {}).get(_ip(str(r.rdata)) or "", 1), i))
        # Heaviest first, so equal draws over the same answer land the same way whatever the order.
        scored.sort(key=lambda wi: -wi[0])
        v = self.rng.randrange(sum(w for w, _ in scored))
        for w, i in scored:
            if v < w:
                return i
            v -= w
        return 0

    def preferred(self, records: list[RR]) -> list[RR]:
        cname, address, mx, rest = _split(records)
        if not address:
            return records
        taken = [False] * len(address)
        front: list[RR] = []
        for net in self.config.prefer:
            for i, r in enumerate(address):
                if not taken[i] and _in(r, net):
                    taken[i] = True
                    front.append(r)
        back = [r for i, r in enumerate(address) if not taken[i]]
        return cname + front + back + mx + rest

    # -- the weight file ---------------------------------------------------------------------

    def load_weights(self) -> bool:
        """Re-read the weight file if its contents changed. OSError/ValueError go to the caller."""
        path = self.config.weight_file
        with open(path, "rb") as f:
            data = f.read()
        digest = hashlib.sha256(data).digest()
        if digest == self._digest:
            return False
        self.weights = parse_weights(data.decode("utf-8", "replace"), path)
        self._digest = digest
        log.info("Successfully reloaded weight file %s", path)
        return True

    async def start(self) -> None:
        if self.config.policy == WEIGHTED and self.config.reload > 0:
            self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    def _reload_weights(self) -> None:
        try:
            self.load_weights()
        except (OSError, ValueError) as e:
            # Keep the weights we have: a file being rewritten must not reset them to 1.
            log.error("%s", e)


def _in(r: RR, net: Network) -> bool:
    try:
        return ipaddress.ip_address(str(r.rdata)) in net
    except ValueError:
        return False


def _policy(d: Dispenser, ctx: SetupContext, cfg: LoadBalanceConfig) -> str:
    """The directive's line: `loadbalance [round_robin | weighted FILE]`."""
    args = d.remaining_args()
    policy = args[0] if args else ROUND_ROBIN
    if policy == ROUND_ROBIN:
        if len(args) > 1:
            raise d.err(f"unknown property for {policy}")
        cfg.policy = ROUND_ROBIN
    elif policy == WEIGHTED:
        if len(args) < 2:
            raise d.err("missing weight file argument")
        if len(args) > 2:
            raise d.err("unexpected argument(s)")
        cfg.policy, cfg.weight_file, cfg.where = WEIGHTED, ctx.path(args[1]), d.token()
    else:
        raise d.err(f"unknown policy: {policy}")
    return policy


def _prefer(d: Dispenser, cfg: LoadBalanceConfig) -> None:
    for cidr in d.remaining_args():
        try:
            cfg.prefer.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as e:
            raise d.err(f'invalid CIDR "{cidr}": {e}') from None


def _weight_reload(d: Dispenser, cfg: LoadBalanceConfig) -> None:
    values = d.remaining_args()
    if not values:
        raise d.err("reload duration value is missing")
    if len(values) > 1:
        raise d.err("unexpected argument")
    try:
        cfg.reload = parse_duration(values[0])
    except ValueError:
        raise d.err(f"invalid reload duration '{values[0]}'") from None
    if cfg.reload < 0:
        raise d.err(f"invalid reload duration '{values[0]}'")


def parse(d: Dispenser, ctx: SetupContext) -> LoadBalanceConfig:
    cfg = LoadBalanceConfig()
    while d.next():
        policy = _policy(d, ctx, cfg)
        while d.next_block():
            prop = d.val()
            if prop == "prefer":
                _prefer(d, cfg)
            elif prop == "reload" and policy == WEIGHTED:
                _weight_reload(d, cfg)
            else:
                raise d.unknown_property()
    return cfg


def setup(d: Dispenser, ctx: SetupContext) -> LoadBalance:
    cfg = parse(d, ctx)
    lb = LoadBalance(cfg)
    if cfg.policy == WEIGHTED:
        # Read now rather than at start, so a broken file is a Corefile error with its FILE:LINE.
        try:
            lb.load_weights()
        except OSError as e:
            if cfg.reload == 0:
                raise cfg.error(f"cannot open weight file: {e}") from None
            log.warning("Failed to open weight file: %s. Will try again in %gs",
                        e, cfg.reload)
        except ValueError as e:
            raise cfg.error(str(e)) from None
    return lb
