"""The busybox check, for real: a network namespace plays the pod, with the pod's resolv.conf
(nameserver 127.0.0.1, the pod search path, ndots:5), Portolan on 127.0.0.1:53 inside it serving
the cluster from manifests, and `busybox nslookup` / `dig +search` run in the namespace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import in_ns, pod_namespace, upstream_argv
from tests.server import PORTOLAN, Process

CLUSTER = Path(__file__).resolve().parents[1] / "data" / "k8s" / "cluster.yaml"
POD_NAMESPACE = "testns"
RESOLV = (
    f"nameserver 127.0.0.1\nsearch {POD_NAMESPACE}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
)


@pytest.fixture
def pod_netns() -> Iterator[str]:
    with pod_namespace(RESOLV) as ns:
        yield ns


def test_busybox_nslookup_and_dig_search(pod_netns: str, tmp_path: Path) -> None:
    corefile = tmp_path / "Corefile"
    corefile.write_text(f""".:53 {{
    bind 127.0.0.1
    errors
    health 127.0.0.1:8080
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        manifests {CLUSTER}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    forward . 127.0.0.2
    cache 30
    loop
    loadbalance
}}
""")
    # The node's resolver, as the pod's upstream: NXDOMAIN for every name outside the cluster.
    upstream = Process(upstream_argv(pod_netns, "--address=/#/"))
    server = Process(["ip", "netns", "exec", pod_netns, PORTOLAN, "dns", "-conf", str(corefile)])
    try:
        server.wait_for(r"^portolan-\d")
        # Debian's busybox (1.35) appends the search domain only to names without a dot; busybox:1.28 in a
        # pod searches through libc. So the dotted short name is asked in full here and with dig +search below.
        out = in_ns(pod_netns, "busybox", "nslookup", "kubernetes.default.svc.cluster.local")
        assert "kubernetes.default.svc.cluster.local" in out, out
        assert "10.96.0.1" in out, out
        out = in_ns(pod_netns, "busybox", "nslookup", "my-svc")
        assert "my-svc.testns.svc.cluster.local" in out, out
        assert "10.96.0.11" in out, out
        assert "fd00:10:96::a" in out, out  # busybox asks AAAA too: the dual-stack ClusterIP
        out = in_ns(pod_netns, "busybox", "nslookup", "10.96.0.11")
        assert "my-svc.testns.svc.cluster.local" in out, out
        # dig with the search list, as a pod's libc would use it (ndots:5: short names are searched).
        out = in_ns(pod_netns, "dig", "+search", "+short", "my-svc")
        assert out.split() == ["10.96.0.11"], out
        out = in_ns(pod_netns, "dig", "+search", "+short", "headless")
        assert sorted(out.split()) == ["172.17.0.6", "172.17.0.7"], out
        out = in_ns(pod_netns, "dig", "+search", "+short", "kubernetes.default")
        assert out.split() == ["10.96.0.1"], out
        out = in_ns(pod_netns, "dig", "+search", "+short", "SRV", "_http._tcp.my-svc")
        assert out.split() == ["0", "50", "80", "my-svc.testns.svc.cluster.local."], out
        out = in_ns(pod_netns, "dig", "+search", "nope")
        assert "status: NXDOMAIN" in out, out
    finally:
        upstream.stop()
        rc = server.stop()
    assert rc == 0
