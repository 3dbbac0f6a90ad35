"""Putting a model into nginx: its configuration (checked, renamed into place, reloaded) and
its live data (pushed over the status socket, no reload).

    new config:   push the new data (nothing deleted) -> nginx -t -> rename -> SIGHUP
                  -> wait until nginx serves the new hash -> push the data again, deletions too
    same config:  push the data that changed

The data goes first so that the new configuration's routes find their records the moment
its workers start; what only the old configuration used is deleted once it is gone.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ingress import certs, livedata
from ingress.channel import ChannelError, DataChannel
from ingress.features.files import SideFiles, model_files
from ingress.layout import Layout
from ingress.metrics import Metrics
from ingress.model import Model
from ingress.nginx import CheckResult, Nginx, check_config
from ingress.pooling import Pooler
from ingress.render import Rendered
from ingress.streampeers import StreamPeers

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What applying a model came to: whether it took, the stage it ended at (the one that failed), nginx's output."""

    ok: bool
    stage: str  # "test" | "reload" | "data"
    output: str = ""


class Applier:
    """Owns what nginx runs: the configuration file, the certificate files, the live data."""

    def __init__(self, layout: Layout, nginx: Nginx, metrics: Metrics, *, reload_timeout: float,
                 pooler: Pooler | None = None) -> None:  # fmt: skip
        """``pooler``: the renderer's (see livedata.Records)."""
        self.layout = layout
        self.nginx = nginx
        self.binary = nginx.binary
        self.metrics = metrics
        self.reload_timeout = reload_timeout
        self.channel = DataChannel(layout)
        self.records = livedata.Records(pooler)
        self.streams = StreamPeers(layout)
        self.certfiles = certs.CertFiles(layout)
        self.sidefiles = SideFiles(layout)  # htpasswd, CA bundles (ingress/features/files.py)
        self.fallback = certs.self_signed()  # served only until the first push names certificates
        self.running_hash = ""
        self.running: Rendered | None = None  # the configuration nginx is serving
        self._signalled: tuple[int | None, str] | None = None  # (master, hash) told to reload, not yet seen
        self.model: Model | None = None  # the model nginx is serving
        self.phases: dict[str, float] = {}  # seconds per step of the last change, for the log

    def prepare(self) -> Path:
        """Write the fallback certificate (the one file nginx.conf names) where the renderer points."""
        path = self.layout.cert("fallback")
        written = self.certfiles.write(self.fallback)
        os.replace(written, path)
        return path

    def _candidate(self, text: str) -> Path:
        fd, name = tempfile.mkstemp(dir=self.layout.root, prefix=".nginx.conf.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return Path(name)

    async def check(self, rendered: Rendered) -> CheckResult:
        """nginx -t on a rendered configuration, without applying it."""
        return await self._check_text(rendered.text)

    async def _check_text(self, text: str) -> CheckResult:
        path = self._candidate(text)
        try:
            return await check_config(self.binary, self.layout, path)
        finally:
            path.unlink(missing_ok=True)

    def changed_hosts(self, rendered: Rendered) -> set[str] | None:
        """The hosts whose server blocks differ from the running configuration's, when nothing
        else does; None when the frame (http settings, maps, the balancer, streams) changed.

        Server blocks share nothing nginx checks across blocks (the frame holds the maps,
        zones and hash sizes they use), so a configuration whose frame passed is refused by
        nginx only for a block it holds: checking the frame with the changed blocks is as
        strict as checking the whole, at the cost of the change."""
        running = self.running
        if running is None or not running.frame or running.frame != rendered.frame:
            return None
        before = {f.key: f.digest for f in running.fragments}
        return {f.key for f in rendered.fragments if before.get(f.key) != f.digest}

    async def push(self, model: Model, *, delete: bool = True, verify: bool = False, sized: bool = True) -> ApplyResult:
        """The model's live data into nginx (``delete``: and nothing else; ``verify``: ask
        nginx whether it still holds it even when nothing changed; ``sized``: only for workers
        whose dicts have the sizes ``model``'s configuration gives them)."""
        t0 = time.monotonic()
        files = self.streams.write(model.streams)
        zones = livedata.zones(model.settings) if sized else ""
        try:
            sent = await self.channel.push(self.records(model), delete=delete, verify=verify, zones=zones)
        except ChannelError as exc:
            log.error("live data: %s", exc)
            self.metrics.reload_failures.labels("data").inc()
            return ApplyResult(False, "data", str(exc))
        if sent or files:  # one update, whether it went to the shared dicts, the L4 files or both
            self.metrics.data_pushes.inc()
            self.phases["push"] = time.monotonic() - t0
        return ApplyResult(True, "data")

    async def update(self, model: Model, *, verify: bool = False) -> ApplyResult:
        """The configuration nginx runs already fits ``model``: only its data may differ."""
        result = await self.push(model, verify=verify)
        if result.ok:
            self.model = model
            self.metrics.model_applied(model)
        return result

    async def apply(self, model: Model, rendered: Rendered, checked: dict[str, CheckResult]) -> ApplyResult:
        """nginx -t (unless ``checked`` already holds the result for this hash; the result is
        added to it), then the candidate in place, a reload, and the data."""
        self.phases = {}
        self.streams.write(model.streams)  # a new TCP/UDP listener finds its peers from the start
        wanted = self.sidefiles.write(model_files(model))  # before nginx -t, which reads them
        if self.nginx.running and self.channel.synced:
            # Whichever workers take it: the push after the reload reaches the new ones.
            early = await self.push(model, delete=False, sized=False)
            if not early.ok:
                return early
        path = self._candidate(rendered.text)
        t0 = time.monotonic()
        try:
            result = checked.get(rendered.hash)
            if result is None:
                changed = self.changed_hosts(rendered)
                if changed is None:
                    result = await check_config(self.binary, self.layout, path)
                    self.phases["nginx -t"] = time.monotonic() - t0
                else:
                    result = await self._check_text(rendered.partial(changed))
                    self.phases[f"nginx -t of {len(changed)} servers"] = time.monotonic() - t0
                checked[rendered.hash] = result
            if not result.ok:
                return ApplyResult(False, "test", result.output)
            os.replace(path, self.layout.conf)  # atomic: nginx never reads half a file
        finally:
            path.unlink(missing_ok=True)
        t0 = time.monotonic()
        # A reload is counted when nginx was told to load a configuration, or is found running
        # another one; not when the supervisor restarts a dead master on the same file.
        reloaded = rendered.hash != self.running_hash
        if not self.nginx.started.is_set():
            await self.nginx.start()
            reloaded = True
        elif self.nginx.running:
            # A reload of this very configuration still in progress (a large one on a busy
            # machine can outlast reload_timeout): wait for it rather than signal again, which
            # would make the master start over.
            if self._signalled != (self.nginx.pid, rendered.hash):
                self.nginx.reload()
                self._signalled = (self.nginx.pid, rendered.hash)
            reloaded = True
        # (not running: the supervisor is restarting it, on the file just written)
        if not await self.nginx.wait_for_hash(rendered.hash, self.reload_timeout):
            tail = self.nginx.error_log_tail()
            log.error("nginx did not load configuration %s within %.0fs; error log tail:\n%s",
                      rendered.hash, self.reload_timeout, tail)  # fmt: skip
            return ApplyResult(False, "reload", tail)
        self.running_hash = rendered.hash
        self.running = rendered
        self._signalled = None
        self.metrics.applied(rendered.hash, reloaded=reloaded)
        self.phases["reload"] = time.monotonic() - t0
        # verify: a reload that changed a lua_shared_dict's size gave it a new, empty zone.
        data = await self.update(model, verify=True)
        self.certfiles.collect({"fallback"})
        self.sidefiles.collect(wanted)
        # How long each step took: where the time goes when a large cluster is slow to go live.
        log.info("nginx serves configuration %s: %d servers, %d upstreams, %d Ingresses (%s)",
                 rendered.hash, len(model.servers), len(model.upstreams), len(model.ingresses),
                 ", ".join(f"{k} {v:.2f}s" for k, v in self.phases.items()))  # fmt: skip
        return data if not data.ok else ApplyResult(True, "reload")
