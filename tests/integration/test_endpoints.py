"""health, ready, prometheus and reload through a real process, over real HTTP and real dig."""

from __future__ import annotations

import re
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.server import DnsServer, free_port, metric


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_health_ready_metrics(tmp_path: Path) -> None:
    hp, rp, mp = free_port(), free_port(), free_port()
    srv = DnsServer(f"""
.:{{port}} {{
    bind 127.0.0.1
    health 127.0.0.1:{hp}
    ready 127.0.0.1:{rp}
    prometheus 127.0.0.1:{mp}
    chaos
    whoami
}}
""", tmp_path)
    try:
        assert http_get(f"http://127.0.0.1:{hp}/health") == (200, "OK")
        assert http_get(f"http://127.0.0.1:{rp}/ready") == (200, "OK")
        for _ in range(3):
            srv.dig("a.example.com", "A")
        srv.dig("b.example.com", "AAAA", "+tcp")
        srv.dig("version.bind", "TXT", "-c", "CH", "+dnssec")
        status, text = http_get(f"http://127.0.0.1:{mp}/metrics")
        assert status == 200
        server = f"dns://127.0.0.1:{srv.port}"
        assert metric(text, "coredns_dns_requests_total", server=server, zone=".", proto="udp", family="1",
                      type="A") == 3
        assert metric(text, "coredns_dns_requests_total", server=server, proto="tcp", type="AAAA") == 1
        assert metric(text, "coredns_dns_responses_total", server=server, rcode="NOERROR", plugin="whoami") == 4
        assert metric(text, "coredns_dns_responses_total", server=server, rcode="NOERROR", plugin="chaos") == 1
        assert metric(text, "coredns_dns_do_requests_total", server=server, zone=".") == 1
        assert metric(text, "coredns_dns_request_duration_seconds_count", server=server, type="A") == 3
        assert metric(text, "coredns_dns_request_duration_seconds_bucket", server=server, type="A",
                      le="+Inf") == 3
        assert metric(text, "coredns_dns_response_size_bytes_count", server=server, proto="udp") == 4
        assert metric(text, "coredns_plugin_enabled", name="whoami", zone=".") == 1
        assert metric(text, "coredns_build_info") == 1
        assert "coredns_reload_version_info" in text
    finally:
        srv.stop()


RELOAD_V1 = """
.:{port} {
    bind 127.0.0.1
    reload 2s 1s
    chaos version-one
}
"""


def test_reload_on_change_keeps_serving_and_rejects_broken(tmp_path: Path) -> None:
    srv = DnsServer(RELOAD_V1, tmp_path)
    failures: list[str] = []
    answers: set[str] = set()
    stop = threading.Event()

    def load() -> None:  # queries during both reloads; every one must be answered (bounded by `stop`)
        n = 0
        while not stop.is_set() and n < 5000:
            d = srv.dig("version.bind", "TXT", "-c", "CH")
            n += 1
            if d.status != "NOERROR":
                failures.append(d.raw)
            answers.update(d.rdata())

    t = threading.Thread(target=load)
    t.start()
    try:
        assert srv.dig("version.bind", "TXT", "-c", "CH").rdata() == ['"version-one"']
        srv.corefile.write_text(RELOAD_V1.replace("{port}", str(srv.port)).replace("version-one", "version-two"))
        srv.wait_for(r"Reloading complete", timeout=20)
        assert srv.dig("version.bind", "TXT", "-c", "CH").rdata() == ['"version-two"']
        # A broken Corefile: logged with FILE:LINE, counted, and the running config keeps serving.
        srv.corefile.write_text(RELOAD_V1.replace("{port}", str(srv.port)).replace("chaos", "nosuchplugin"))
        srv.wait_for(rf"Restart failed: {re.escape(str(srv.corefile))}:5 - .*nosuchplugin", timeout=20)
        assert srv.dig("version.bind", "TXT", "-c", "CH").rdata() == ['"version-two"']
        # SIGUSR1 reloads at once.
        srv.corefile.write_text(RELOAD_V1.replace("{port}", str(srv.port)).replace("version-one", "three"))
        srv.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while srv.dig("version.bind", "TXT", "-c", "CH").rdata() != ['"three"']:
            assert time.monotonic() < deadline
        # The load must see the new answer too before it stops: it may be between two queries now.
        while '"three"' not in answers and t.is_alive():
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        stop.set()
        t.join()
        srv.stop()
    assert failures == []
    assert {'"version-one"', '"version-two"', '"three"'} <= answers


def test_examples_corefile_as_readme_says() -> None:
    """The README's first command: `portolan dns -conf examples/Corefile` from the repository root."""
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    assert "portolan dns -conf examples/Corefile" in readme
    from tests.server import PORTOLAN, Process, dig

    p = Process([PORTOLAN, "dns", "-conf", "examples/Corefile"], cwd=str(root))
    try:
        p.wait_for(r"^portolan-\d")
        d = dig("127.0.0.1", 1053, "app.example.org", "A")
        assert d.status == "NOERROR"
        assert d.rdata() == ["10.0.0.1"]
        assert dig("127.0.0.1", 1053, "app.example.org", "AAAA").rdata() == ["fd00::1"]
        assert dig("127.0.0.1", 1053, "+tcp", "anything.example").additional[0].endswith("127.0.0.1")
        assert http_get("http://127.0.0.1:18080/health") == (200, "OK")
    finally:
        assert p.stop() == 0
