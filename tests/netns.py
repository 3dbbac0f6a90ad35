"""A network namespace playing a pod: its own loopback, its own resolv.conf, nothing outside it."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

_seq = itertools.count()


@contextlib.contextmanager
def pod_namespace(resolv_conf: str) -> Iterator[str]:
    """A fresh namespace with lo up (127.0.0.0/8 inside it); `ip netns exec` gives it `resolv_conf`."""
    name = f"portolan-{os.getpid()}-{next(_seq)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    etc = Path("/etc/netns") / name
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(resolv_conf)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(etc, ignore_errors=True)


def in_ns(ns: str, *argv: str, timeout: float = 30) -> str:
    """Run a command inside the namespace; its stdout and stderr together."""
    res = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout)
    return res.stdout + res.stderr


def upstream_argv(ns: str, *dnsmasq_args: str) -> list[str]:
    """The node's resolver for a pod namespace: dnsmasq on 127.0.0.2:53 inside it."""
    return ["ip", "netns", "exec", ns, "dnsmasq", "--keep-in-foreground", "--user=root", "--port=53",
            "--listen-address=127.0.0.2", "--bind-interfaces", "--no-resolv", "--no-hosts", "--log-facility=-",
            *dnsmasq_args]
