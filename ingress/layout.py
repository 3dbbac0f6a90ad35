"""Where everything lives under ``--config-dir``: nginx.conf, certificates, pid file, logs,
temp directories and the status socket.

Everything nginx writes is here, so the controller runs as root or not without touching
/var or /run. The directories nginx workers use (temp paths) are created 0711 at the top:
when the master runs as root its workers run as another user, and they must be able to
traverse to them. Keys live in ``certs/`` (0700, files 0600), read by the master only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# sockaddr_un.sun_path is 108 bytes on Linux, the terminating NUL included.
MAX_SOCKET_PATH = 107
TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
STATUS_SOCKET = "nginx-status.sock"
_RUN_DIRS: dict[Path, int] = {}  # run directory -> O_PATH descriptor (status_socket_address)


@dataclass(frozen=True)
class Layout:
    """The paths under --config-dir, where nginx's configuration, certificates, logs and sockets live."""

    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> Layout:
        return cls(Path(path).absolute())

    @property
    def conf(self) -> Path:
        return self.root / "nginx.conf"

    @property
    def pid(self) -> Path:
        return self.root / "nginx.pid"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def error_log(self) -> Path:
        return self.logs / "error.log"

    @property
    def access_log(self) -> Path:
        return self.logs / "access.log"

    @property
    def temp(self) -> Path:
        return self.root / "tmp"

    def temp_path(self, kind: str) -> Path:
        return self.temp / kind

    @property
    def l4(self) -> Path:
        """The live peers of TCP/UDP services, a file each, read by nginx's workers."""
        return self.root / "l4"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    def cert(self, digest: str) -> Path:
        return self.certs / f"{digest}.pem"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def status_socket(self) -> Path:
        """nginx's internal status server (health, running config hash, the live data
        channel): a Unix socket, so it needs no port and is unreachable from the network."""
        return self.run / STATUS_SOCKET

    @property
    def status_socket_relative(self) -> str:
        """The same socket as nginx.conf names it: relative to nginx's working directory, the
        config dir, so that no config dir is too deep for a socket path (107 bytes)."""
        return f"{self.run.name}/{STATUS_SOCKET}"

    def status_socket_address(self) -> str:
        """A path the controller can connect to, whatever the config dir's depth: the real one
        when it fits sun_path, else the same file through /proc/self/fd and an O_PATH
        descriptor of the run directory (Linux; held for the life of the process)."""
        full = str(self.status_socket)
        if len(os.fsencode(full)) <= MAX_SOCKET_PATH:
            return full
        fd = _RUN_DIRS.get(self.run)
        if fd is None:
            fd = _RUN_DIRS[self.run] = os.open(self.run, os.O_PATH | os.O_DIRECTORY)
        return f"/proc/self/fd/{fd}/{STATUS_SOCKET}"

    def prepare(self) -> None:
        # run/ is the controller's and nginx master's only (0700): the data channel lives there.
        for directory, mode in ((self.root, 0o711), (self.logs, 0o755), (self.temp, 0o711), (self.run, 0o700),
                               (self.l4, 0o755)):  # fmt: skip
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, mode)
        self.certs.mkdir(exist_ok=True)
        os.chmod(self.certs, 0o700)
