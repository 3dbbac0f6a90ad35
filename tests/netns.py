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


def upstream_argv(ns: str, *dnsmasq_args: str, listen: str = "127.0.0.2") -> list[str]:
    """The node's resolver: dnsmasq on `listen`:53 inside namespace `ns`, answering only from its arguments."""
    return ["ip", "netns", "exec", ns, "dnsmasq", "--keep-in-foreground", "--user=root", "--port=53",
            f"--listen-address={listen}", "--bind-interfaces", "--no-resolv", "--no-hosts", "--log-facility=-",
            *dnsmasq_args]


NODE_IP, POD_IP = "10.255.0.1", "10.255.0.2"


@contextlib.contextmanager
def node_namespace(pod_ns: str) -> Iterator[str]:
    """A second namespace playing the node, joined to the pod's by a veth pair: the node is NODE_IP and
    the pod POD_IP. Both addresses exist only inside these two namespaces; nothing reaches the host."""
    node = f"{pod_ns}-node"
    subprocess.run(["ip", "netns", "add", node], check=True)
    try:
        veth_node, veth_pod = f"vn{os.getpid() % 100000}", f"vp{os.getpid() % 100000}"
        run = [["ip", "link", "add", veth_node, "netns", node, "type", "veth", "peer", "name", veth_pod,
                "netns", pod_ns],
               ["ip", "-n", node, "addr", "add", f"{NODE_IP}/30", "dev", veth_node],
               ["ip", "-n", pod_ns, "addr", "add", f"{POD_IP}/30", "dev", veth_pod],
               ["ip", "-n", node, "link", "set", veth_node, "up"],
               ["ip", "-n", node, "link", "set", "lo", "up"],
               ["ip", "-n", pod_ns, "link", "set", veth_pod, "up"]]
        for argv in run:
            subprocess.run(argv, check=True)
        yield node
    finally:
        subprocess.run(["ip", "netns", "del", node], check=False)  # takes the veth pair with it
