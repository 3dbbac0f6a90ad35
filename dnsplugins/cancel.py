"""cancel: give every query a deadline; work on it still running then is cancelled.

## Syntax

```
cancel [TIMEOUT]
```

* **TIMEOUT** is a Go duration; default `5001ms`, just past the 5 seconds after which DNS clients
  give up.

The rest of the chain runs under the deadline. When it passes, whatever the later plugins are still
awaiting (an upstream's reply, a lookup) is cancelled, the client gets SERVFAIL and the error
`context deadline exceeded` goes to the error log (errors), as CoreDNS reports a cancelled context.

A stored wire answer (the hot path) is sent at once, so `cancel` never needs to see those queries.
With a TIMEOUT of at least forward's own 5 second limit per query, the relay path (forward answering
from bytes) may skip it too; with a shorter one the block's forwarded queries go through the chain,
where the deadline applies.

## Examples

```corefile
example.org {
    cancel
    whoami
}
```

```corefile
example.org {
    cancel 1s
    forward . 127.0.0.1:5301
}
```
"""

from __future__ import annotations

import asyncio

from dnslib import DNSRecord

from corefile import Dispenser
from dnsplugins.forward.forward import DEADLINE as FORWARD_DEADLINE
from dnsserver.durations import parse_duration
from dnsserver.plugin import Next, Plugin, SetupContext
from dnsserver.request import Request

DEFAULT_TIMEOUT = 5.001


class DeadlineExceeded(Exception):
    """The query's deadline passed before the chain answered."""

    def __init__(self) -> None:
        super().__init__("context deadline exceeded")  # Go's text for the same event, which users grep for


class Cancel(Plugin):
    """`cancel`: runs the rest of the chain under a per-query deadline."""

    name = "cancel"

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        # A deadline that cannot cut a relayed query short (forward stops by then) need not keep the
        # relay path from skipping it; the hot path answers at once either way.
        self.fast_safe = timeout >= FORWARD_DEADLINE

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                return await next(req)
        except TimeoutError:
            if deadline.expired():
                raise DeadlineExceeded() from None
            raise


def setup(d: Dispenser, ctx: SetupContext) -> Cancel:
    timeout = DEFAULT_TIMEOUT
    while d.next():
        args = d.remaining_args()
        if len(args) > 1:
            raise d.arg_err()
        if args:
            try:
                timeout = parse_duration(args[0])
            except ValueError:
                raise d.err(f'invalid duration: "{args[0]}"') from None
            if timeout <= 0:
                raise d.err(f'invalid negative duration: "{args[0]}"')
    return Cancel(timeout)
