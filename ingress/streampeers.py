"""The live peers of TCP/UDP services: one file per service under ``l4/`` in --config-dir.

nginx's stream module has no Lua in Debian; its njs module reads these files instead
(templates/njs/portolan_l4.js), once per new connection. Each file is replaced whole (a new
file renamed over the old), so a reader sees the old list or the new one, never half of
either; nginx.conf names the file, never the endpoints, so an endpoint change needs no reload.
The files hold addresses only (no secret): they are world-readable, as nginx's workers may
run as another user.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable

from ingress.l4 import StreamServer
from ingress.layout import Layout
from ingress.render import host_port


class StreamPeers:
    """Keeps l4/ equal to the ready endpoints of the current TCP/UDP services."""

    def __init__(self, layout: Layout) -> None:
        self.directory = layout.l4
        self.written: dict[str, str] | None = None  # None: what is on disk is unknown (start-up)

    def write(self, streams: Iterable[StreamServer]) -> int:
        """Bring the files to ``streams``; returns how many were written or removed."""
        want = {s.key: " ".join(host_port(ip, port) for ip, port in s.endpoints) for s in streams}
        if self.written is None:  # a previous run's files: whatever is not wanted goes
            self.written = {p.name: "" for p in self.directory.iterdir() if not p.name.startswith(".")}
            self.written.update({k: "\0" for k in want})  # force a write of every wanted file
        changed = 0
        for key, text in want.items():
            if self.written.get(key) != text:
                fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
                try:
                    os.fchmod(fd, 0o644)
                    with os.fdopen(fd, "w") as f:
                        f.write(text)
                    os.replace(tmp, self.directory / key)
                except BaseException:
                    os.unlink(tmp)
                    raise
                changed += 1
        for key in set(self.written) - set(want):
            (self.directory / key).unlink(missing_ok=True)
            changed += 1
        self.written = want
        return changed
