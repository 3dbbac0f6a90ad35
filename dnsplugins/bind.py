"""bind: listen only on the given addresses or network interfaces.

## Syntax

```
bind ADDRESS|IFACE ... {
    except ADDRESS|IFACE ...
}
```

* **ADDRESS** is an IPv4 or IPv6 address; **IFACE** a network interface name, which stands for every
  address the interface has when the Corefile is loaded.
* `except` removes addresses (or an interface's addresses) from the list.

Several `bind` lines add up. Without `bind` a server block listens on every address. The same zone
and port may be served by two blocks only when they bind to different addresses.

## Examples

```corefile
.:1053 {
    bind 127.0.0.1 ::1
    whoami
}
```

```corefile
example.org {
    bind lo {
        except ::1
    }
    whoami
}
```
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

from corefile import Dispenser
from dnsserver.plugin import ListenOptions, Plugin, SetupContext

SIOCGIFADDR = 0x8915


def interface_addresses(name: str) -> list[str]:
    """Addresses of interface `name`: its IPv4 address (ioctl) and IPv6 ones (/proc/net/if_inet6)."""
    out: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            out.append(socket.inet_ntoa(packed[20:24]))
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5] == name:
                    addr = ipaddress.IPv6Address(bytes.fromhex(parts[0]))
                    if not addr.is_link_local:  # link-local needs a scope id; CoreDNS skips them too
                        out.append(str(addr))
    except OSError:
        pass
    return out


def _expand(d: Dispenser, item: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(item))]
    except ValueError:
        pass
    names = {n for _, n in socket.if_nameindex()}
    if item not in names:
        raise d.err(f"not a valid IP address or interface name: {item!r}")
    return interface_addresses(item)


class Bind(Plugin):
    """`bind`: the addresses the block's listeners bind (config only)."""

    name = "bind"
    in_chain = False

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    def listener_options(self, opts: ListenOptions) -> None:
        opts.bind = list(self.addresses)


def setup(d: Dispenser, ctx: SetupContext) -> Bind:
    addrs: list[str] = []
    excluded: set[str] = set()
    while d.next():
        args = d.remaining_args()
        if not args:
            raise d.arg_err()
        for a in args:
            addrs.extend(_expand(d, a))
        while d.next_block():
            if d.val() != "except":
                raise d.unknown_property()
            ex = d.remaining_args()
            if not ex:
                raise d.arg_err()
            for a in ex:
                excluded.update(_expand(d, a))
    result = [a for a in dict.fromkeys(addrs) if a not in excluded]
    if not result:
        raise d.err("no address left to bind to")
    return Bind(result)
