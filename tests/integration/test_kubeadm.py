"""The stock kubeadm Corefile, unchanged (taken from deploy/dns/configmap.yaml), in a pod-like network
namespace: on port 53 of every address there, with in-cluster credentials (a service-account token and
CA at the standard path, bind-mounted in a private mount namespace), against the API emulator running
in the same namespace, forwarding to the node's resolver from /etc/resolv.conf. deploy/dns/ and the test
cluster are loaded with real `kubectl apply`; checks use dig and busybox wget inside the namespace."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.netns import NODE_IP, in_ns, node_namespace, pod_namespace, upstream_argv
from tests.server import PORTOLAN, Process, metric

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "dns"
CLUSTER = ROOT / "tests" / "data" / "k8s" / "cluster.yaml"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN = "portolan-test-token"


def kubeadm_corefile() -> str:
    cm = yaml.safe_load((DEPLOY / "configmap.yaml").read_text())
    return cm["data"]["Corefile"]


@pytest.fixture
def mount_point() -> Iterator[Path]:
    """The standard service-account directory must exist to be mounted over; made only if missing."""
    created = []
    for p in reversed([SA_DIR, *SA_DIR.parents]):
        if not p.exists():
            p.mkdir()
            created.append(p)
    try:
        yield SA_DIR
    finally:
        for p in reversed(created):
            p.rmdir()


def test_kubeadm_corefile_in_a_pod(tmp_path: Path, mount_point: Path) -> None:
    with pod_namespace(f"nameserver {NODE_IP}\n") as ns, node_namespace(ns) as node:
        # The API server, inside the pod's namespace, serving HTTPS with a token.
        tls_dir = tmp_path / "tls"
        emu = Process(["ip", "netns", "exec", ns, sys.executable, "-m", "tests.apiemu", "--port", "0",
                       "--tls-dir", str(tls_dir), "--token", TOKEN, "--no-save"], cwd=str(ROOT),
                      env=dict(os.environ, PYTHONPATH=str(ROOT)))
        # The node's resolver, in the node's namespace: what `forward . /etc/resolv.conf` reaches.
        upstream = Process(upstream_argv(node, "--address=/www.example.org/192.0.2.10", "--address=/#/",
                                         listen=NODE_IP))
        dns: Process | None = None
        try:
            url = emu.wait_for(r"APIEMU READY (https://\S+)").group(1)
            port = url.rsplit(":", 1)[1]
            kubeconfig = tmp_path / "kubeconfig"
            kubeconfig.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "t",
                "clusters": [{"name": "t",
                              "cluster": {"server": url, "certificate-authority": str(tls_dir / "ca.crt")}}],
                "users": [{"name": "t", "user": {"token": TOKEN}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
            kubectl = ["kubectl", "--kubeconfig", str(kubeconfig)]
            for path in (DEPLOY, CLUSTER):
                out = in_ns(ns, *kubectl, "apply", "-f", str(path), timeout=60)
                assert "error" not in out.lower(), out
            # Every deploy manifest parsed into the object it describes.
            got = json.loads(in_ns(ns, *kubectl, "get", "-f", str(DEPLOY), "-o", "json", timeout=60))
            kinds = sorted((i["kind"], i["metadata"]["name"]) for i in got["items"])
            assert kinds == sorted([("ServiceAccount", "portolan-dns"), ("ClusterRole", "system:portolan-dns"),
                                    ("ClusterRoleBinding", "system:portolan-dns"), ("ConfigMap", "portolan-dns"),
                                    ("Deployment", "portolan-dns"), ("Service", "kube-dns"), ("Pod", "busybox")])
            svc = next(i for i in got["items"] if i["kind"] == "Service")
            assert svc["spec"]["clusterIP"] == "10.96.0.10"
            assert sorted((p["port"], p["protocol"]) for p in svc["spec"]["ports"]) == [
                (53, "TCP"), (53, "UDP"), (9153, "TCP")]
            deployment = next(i for i in got["items"] if i["kind"] == "Deployment")
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            assert deployment["spec"]["replicas"] == 2
            assert container["args"] == ["-conf", "/etc/coredns/Corefile"]
            assert container["securityContext"]["capabilities"]["add"] == ["NET_BIND_SERVICE"]

            # The pod's service account, where in-cluster configuration looks for it.
            sa = tmp_path / "serviceaccount"
            sa.mkdir()
            (sa / "token").write_text(TOKEN)
            (sa / "ca.crt").write_bytes((tls_dir / "ca.crt").read_bytes())
            (sa / "namespace").write_text("kube-system")
            conf = tmp_path / "Corefile"
            conf.write_text(kubeadm_corefile())
            script = f"mount --bind {sa} {mount_point} && exec {PORTOLAN} dns -conf {conf}"
            dns = Process(["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
                           "sh", "-c", script],
                          env=dict(os.environ, KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT=port))
            dns.wait_for(r"^portolan-\d", timeout=30)

            def dig(*args: str) -> str:
                return in_ns(ns, "dig", "@127.0.0.1", "+short", *args).strip()

            assert dig("kubernetes.default.svc.cluster.local") == "10.96.0.1"
            assert dig("kube-dns.kube-system.svc.cluster.local") == "10.96.0.10"
            assert dig("my-svc.testns.svc.cluster.local") == "10.96.0.11"
            assert sorted(dig("headless.testns.svc.cluster.local").split()) == ["172.17.0.6", "172.17.0.7"]
            assert dig("-x", "10.96.0.10") == "kube-dns.kube-system.svc.cluster.local."
            assert dig("172-17-0-9.testns.pod.cluster.local") == "172.17.0.9"  # pods insecure
            assert dig("www.example.org") == "192.0.2.10"  # forward . /etc/resolv.conf
            # An ExternalName outside the cluster: the CNAME, then its target resolved through this server.
            assert dig("outside.testns.svc.cluster.local").split() == ["www.example.org.", "192.0.2.10"]
            assert "status: NXDOMAIN" in in_ns(ns, "dig", "@127.0.0.1", "nope.testns.svc.cluster.local")
            assert dig("+tcp", "kubernetes.default.svc.cluster.local") == "10.96.0.1"
            ttl = in_ns(ns, "dig", "@127.0.0.1", "+noall", "+answer", "my-svc.testns.svc.cluster.local").split()[1]
            assert 0 < int(ttl) <= 30  # ttl 30, then counted down by cache 30
            assert in_ns(ns, "busybox", "wget", "-qO-", "http://127.0.0.1:8080/health").strip() == "OK"
            assert in_ns(ns, "busybox", "wget", "-qO-", "http://127.0.0.1:8181/ready").strip() == "OK"
            metrics = in_ns(ns, "busybox", "wget", "-qO-", "http://127.0.0.1:9153/metrics")
            assert metric(metrics, "coredns_dns_requests_total", server="dns://:53", zone=".", proto="udp",
                          type="A") >= 8
            assert metric(metrics, "coredns_cache_hits_total", type="success") >= 1
            assert metric(metrics, "coredns_build_info") == 1
        finally:
            # Stop everything before judging anything, so a failure here leaves no process behind.
            rc = dns.stop(timeout=20) if dns is not None else 0  # lameduck 5s first
            upstream.stop()
            emu.stop()
        assert rc == 0
