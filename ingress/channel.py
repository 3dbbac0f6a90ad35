"""The live data channel: records pushed into nginx's shared memory over its status socket.

What changes all day (endpoints, canary weights, certificates) reaches nginx here, with no
reload: templates/lua/portolan.lua stores each record in a ``lua_shared_dict`` that every
worker reads and that outlives reloads. The socket is a Unix socket under --config-dir, in
a directory only the controller's user can enter: no network client can reach it.

The channel sends only what changed since the last push it knows nginx took. Each push
names a token; nginx refuses an incremental push whose token it does not hold (a restarted
master has empty dicts), and the channel then sends everything again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from urllib.parse import quote

import aiohttp

from ingress.layout import Layout

log = logging.getLogger(__name__)

DATA_PATH = "http://nginx-status/portolan/data"
# Sets of what locations point at (upstreams, certificates) go before what points at them
# (routes, hosts); deletions the other way round. A worker never meets a route whose
# upstream has not arrived yet.
_SET_ORDER = {"u": 0, "c": 0, "r": 1, "h": 1}


# A worker of the configuration before a reload may still take a push for a moment. When that
# reload resized a dict, the worker's dicts are not the ones the new workers read: the push
# names the sizes it is meant for, such a worker answers 421, and the push is sent again.
MISDIRECTED = 421
RESEND_FOR = 2.0  # seconds


class ChannelError(Exception):
    """nginx did not take a push."""


def refused(status: int, text: str) -> ChannelError:
    hint = " (the live data does not fit: raise lua-shared-dicts in the ConfigMap)" if status == 507 else ""
    return ChannelError(f"nginx refused the live data ({status}): {text.strip()}{hint}")


def _line(key: str, value: str | None) -> str:
    head = "k=" + quote(key, safe="")
    return head if value is None else f"{head}&v={quote(value, safe='')}"


def encode(token: str, full: bool, sets: Mapping[str, str], deletions: list[str], zones: str = "") -> bytes:
    """The body of one push: a head line, then one line per record."""
    lines = [f"token={token}" + ("&full=1" if full else "") + (f"&zones={zones}" if zones else "")]
    lines += [_line(k, sets[k]) for k in sorted(sets, key=lambda k: (_SET_ORDER.get(k[:1], 2), k))]
    lines += [_line(k, None) for k in sorted(deletions, key=lambda k: (-_SET_ORDER.get(k[:1], 2), k))]
    return ("\n".join(lines) + "\n").encode()


class DataChannel:
    """Keeps nginx's live data equal to the records it is given."""

    def __init__(self, layout: Layout, timeout: float = 30.0) -> None:
        self.layout = layout
        self.timeout = timeout
        self.pushed: dict[str, str] = {}  # what nginx holds, as far as we know
        self.synced = False  # False: the next push sends everything
        self._token = uuid.uuid4().hex

    def reset(self) -> None:
        """nginx may have lost its data (a new master): send everything next time."""
        self.synced = False

    async def push(
        self, records: Mapping[str, str], *, delete: bool = True, verify: bool = False, zones: str = ""
    ) -> int:
        """Make nginx hold ``records`` (and, with ``delete``, nothing else). Returns the number
        of records sent; ChannelError if nginx did not take them. ``verify``: ask nginx even
        when nothing changed (after a reload, which empties a dict whose size changed).
        ``zones``: the dicts' sizes in the configuration running (livedata.zones)."""
        if self.synced:
            sets = {k: v for k, v in records.items() if self.pushed.get(k) != v}
            gone = [k for k in self.pushed if k not in records] if delete else []
            if not sets and not gone and not verify:
                return 0
            status, text = await self._post(encode(self._token, False, sets, gone, zones))
            if status == 200:
                self.pushed.update(sets)
                for k in gone:
                    del self.pushed[k]
                return len(sets) + len(gone)
            if status != 409:
                self.synced = False
                raise refused(status, text)
            log.info("nginx no longer holds the live data (a new master?): sending all of it")
        # Everything: nginx drops what the push does not name, and keeps serving what it held
        # meanwhile. Records kept for old routes (delete=False) go along, so a configuration
        # still running finds them.
        everything = dict(records) if delete else {**self.pushed, **records}
        status, text = await self._post(encode(self._token, True, everything, [], zones))
        if status != 200:
            self.synced = False
            raise refused(status, text)
        self.pushed = everything
        self.synced = True
        return len(everything)

    async def _post(self, body: bytes) -> tuple[int, str]:
        """POST a push, again (on a new connection) while a worker of an older configuration takes it."""
        deadline = time.monotonic() + RESEND_FOR
        while True:
            status, text = await self._post_once(body)
            if status != MISDIRECTED or time.monotonic() >= deadline:
                return status, text
            await asyncio.sleep(0.01)

    async def _post_once(self, body: bytes) -> tuple[int, str]:
        connector = aiohttp.UnixConnector(path=self.layout.status_socket_address(), force_close=True)
        try:
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.post(DATA_PATH, data=body, timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp,
            ):
                return resp.status, await resp.text()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.synced = False
            raise ChannelError(f"cannot reach nginx's status socket: {exc}") from exc
