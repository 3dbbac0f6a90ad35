"""The files feature values need (htpasswd, CA bundles, the certificate of a host with client
certificates), under --config-dir/auth, written before nginx -t and removed once no running
configuration names them.

Modes are as tight as nginx allows: what only the master reads at load (CA bundles, keys) is
0600 and ours; an htpasswd file, which workers read per request, is 0400 and owned by the
workers' user when we run as root (nginx's default user "nobody": nginx.conf sets none), else
ours, the user the workers then run as. The directory is 0711: workers can open a file whose
name they know (from nginx.conf), nobody can list them.
"""

from __future__ import annotations

import os
import pwd
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ingress.features import SideFile, find
from ingress.layout import Layout

WORKER_USER = "nobody"


def directory(layout: Layout) -> Path:
    return layout.root / "auth"


def model_files(model: Any) -> Iterator[SideFile]:
    """Every file the model's servers need: their feature values' files, and the certificate
    (chain and key) of each host with client certificates, named by its digest."""
    pairs = {pair.digest: pair for pair in model.certificates}
    for server in model.servers:
        tls = find(server.features, "client_tls")
        if tls is not None and not tls.denied:
            pair = pairs[server.cert or model.default_cert]
            yield SideFile(f"{pair.digest}.pem", pair.pem)
        for value in server.features:
            yield from getattr(value, "files", ())
        for loc in server.locations:
            for value in loc.ann.features:
                yield from getattr(value, "files", ())


class SideFiles:
    """Keeps --config-dir/auth holding the files the configurations need."""

    def __init__(self, layout: Layout) -> None:
        self.directory = directory(layout)
        self.written: set[str] = set()

    def _owner(self, worker: bool) -> tuple[int, int] | None:
        if not worker or os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(WORKER_USER)
        except KeyError:
            return None
        return entry.pw_uid, entry.pw_gid

    def write(self, files: Iterable[SideFile]) -> set[str]:
        """Write what is missing; the names of all of ``files``."""
        names: set[str] = set()
        for f in files:
            names.add(f.name)
            target = self.directory / f.name
            if f.name in self.written and target.exists():
                continue
            self.directory.mkdir(mode=0o711, exist_ok=True)
            os.chmod(self.directory, 0o711)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            try:
                os.fchmod(fd, 0o400 if f.worker else 0o600)
                owner = self._owner(f.worker)
                if owner is not None:
                    os.fchown(fd, *owner)
                with os.fdopen(fd, "wb") as out:
                    out.write(f.data)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self.written.add(f.name)
        return names

    def collect(self, keep: set[str]) -> None:
        """Remove the files no configuration nginx runs names any more."""
        if not self.directory.is_dir():
            return
        for path in self.directory.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)
                self.written.discard(path.name)
