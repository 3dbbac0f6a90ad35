"""The Dockerfile's way of letting an unprivileged user serve port 53: the capability is granted to the
interpreter file (setcap cap_net_bind_service=+ep), not to the user. No Docker engine runs here, so the same
mechanism is exercised directly: Debian's own python3 copied and given the capability, run as `nobody`
inside a fresh network namespace, binds UDP and TCP 53; without the capability the same bind is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import pod_namespace

BIND_53 = ("import socket\n"
           "for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):\n"
           "    s = socket.socket(socket.AF_INET, kind); s.bind(('127.0.0.1', 53)); s.close()\n"
           "print('bound')\n")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]


@pytest.fixture
def interpreter() -> Iterator[Path]:
    # Outside root's home (mode 700), readable by nobody: what a container image's interpreter is.
    directory = Path(tempfile.mkdtemp(prefix="portolan-cap-"))
    os.chmod(directory, 0o755)
    copy = directory / "python3"
    shutil.copy2("/usr/bin/python3.11", copy)
    try:
        yield copy
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_as_nobody(ns: str, python: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *NOBODY, str(python), "-c", BIND_53],
                          capture_output=True, text=True, timeout=30)


def test_unprivileged_user_binds_53_through_the_interpreter_capability(interpreter: Path) -> None:
    with pod_namespace("nameserver 127.0.0.1\n") as ns:
        refused = run_as_nobody(ns, interpreter)
        assert refused.returncode != 0, refused
        assert "Permission denied" in refused.stderr, refused
        subprocess.run(["setcap", "cap_net_bind_service=+ep", str(interpreter)], check=True)
        allowed = run_as_nobody(ns, interpreter)
        assert allowed.returncode == 0, allowed
        assert allowed.stdout.strip() == "bound", allowed
