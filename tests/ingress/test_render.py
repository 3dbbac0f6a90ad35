"""Rendering: strict templates, quoting, hash, listen and resolver forms, name hash sizes."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from ingress import livedata
from ingress.layout import Layout
from ingress.modelcache import HostCache, build
from ingress.render import Listen, Renderer, names_hash_sizes, resolver_address, server_name
from ingress.settings import NginxSettings
from tests.ingress import objects as o
from tests.ingress.modelkit import canary_model, fake_addresses, model_of, snapshot, store_of
from tests.ingress.routing import standard_objects

LAYOUT = Layout.at("/tmp/portolan-render")


def test_strict_undefined(tmp_path: Path) -> None:
    (tmp_path / "nginx.conf.j2").write_text("worker_processes {{ settings.no_such_setting }};\n")
    with pytest.raises(jinja2.UndefinedError):
        Renderer(LAYOUT, Listen(), templates=tmp_path).render(model_of())


def test_hash_is_embedded_and_stable() -> None:
    model = model_of(o.ingress("i", o.rule("foo.com", o.path("/", "a"))))
    renderer = Renderer(LAYOUT, Listen(("127.0.0.1",), 8080, 8443))
    first, second = renderer.render(model), renderer.render(model)
    assert first == second
    assert len(first.hash) == 16
    assert f'return 200 "{first.hash}";' in first.text
    other = renderer.render(model_of(o.ingress("i", o.rule("foo.com", o.path("/b", "a")))))
    assert other.hash != first.hash


def test_listen_forms() -> None:
    text = Renderer(LAYOUT, Listen(("127.0.0.1", "::1"), 8080, 443)).render(model_of()).text
    assert "listen 127.0.0.1:8080 default_server;" in text
    assert "listen [::1]:8080 default_server;" in text
    assert "listen [::1]:443 ssl http2 default_server;" in text
    # relative to nginx's working directory (the config dir): no depth is too deep for sun_path
    assert 'listen "unix:run/nginx-status.sock";' in text


@pytest.mark.parametrize(
    ("raw", "rendered"),
    [("10.0.0.10", "10.0.0.10"), ("10.0.0.10:5353", "10.0.0.10:5353"), ("fd00::a", "[fd00::a]"),
     ("[fd00::a]:53", "[fd00::a]:53"), ("dns.local", None), ("10.0.0.10:0", None), ("fe80::1%x;", None)],
)  # fmt: skip
def test_resolver_address(raw: str, rendered: str | None) -> None:
    if rendered is None:
        with pytest.raises(ValueError, match="is not IP or IP:PORT"):
            resolver_address(raw)
    else:
        assert resolver_address(raw) == rendered


def test_server_names() -> None:
    model = model_of(o.ingress("i", o.rule("*.foo.com", o.path("/", "a")), o.rule("foo.com", o.path("/", "a"))))
    names = {s.host: server_name(s) for s in model.servers}
    assert names == {"_": "_", "foo.com": "foo.com", "*.foo.com": "~^[^.]+\\.foo\\.com$"}
    text = Renderer(LAYOUT, Listen()).render(model).text
    # Backslashes doubled inside nginx quotes: nginx reads them back as single ones.
    assert 'server_name "~^[^.]+\\\\.foo\\\\.com$";' in text


def test_names_hash_grows_with_the_longest_name() -> None:
    short = model_of(o.ingress("i", o.rule("foo.com", o.path("/", "a"))))
    assert names_hash_sizes(short) == (64, 2048)
    long_host = ".".join(["a" * 63] * 3 + ["b" * 57, "com"])
    bucket, _ = names_hash_sizes(model_of(o.ingress("i", o.rule(long_host, o.path("/", "a")))))
    assert bucket == 512


CANARY_WEIGHTS = [("1", "1000"), ("250", "1000"), ("30", None), ("1000", "1000"), ("1", "300"), ("0", "1000")]


def test_canary_weights_are_data_not_configuration() -> None:
    # Every weight renders the same nginx.conf (no reload to change it); only the route's live
    # record differs.
    models = [canary_model({"canary-weight": w, "canary-weight-total": t}) for w, t in CANARY_WEIGHTS]
    hashes = {Renderer(LAYOUT, Listen()).render(m).hash for m in models}
    routes = {tuple(v for k, v in sorted(livedata.records(m).items()) if k.startswith("r:")) for m in models}
    assert len(hashes) == 1
    assert len(routes) == len(CANARY_WEIGHTS)


def test_blocks_render_once_and_a_partial_check_holds_the_changed_ones() -> None:
    # Unchanged hosts keep their Server objects (HostCache) and so their rendered blocks; the
    # hash still covers every block; the partial configuration holds the frame, the catch-all
    # and the changed host only.
    from ingress.applier import Applier

    store = store_of(*standard_objects(fake_addresses()), *(o.ingress(f"i{n}", o.rule(f"h{n}.com", o.path("/", "a")))
                                                              for n in range(5)))  # fmt: skip
    cache, renderer = HostCache(), Renderer(LAYOUT, Listen())
    first = renderer.render(build(snapshot(store), (), cache))
    o.put(store, o.ingress("i2", o.rule("h2.com", o.path("/x", "a"))))
    second = renderer.render(build(snapshot(store), (), cache))
    assert first.hash != second.hash
    assert second.text == renderer.render(build(snapshot(store))).text
    same = [a.text is b.text for a, b in zip(first.fragments, second.fragments, strict=True)]
    assert same == [s.host != "h2.com" for s in build(snapshot(store)).servers]
    applier = Applier.__new__(Applier)  # only the comparison, no nginx
    applier.running = first
    assert applier.changed_hosts(second) == {"h2.com"}
    partial = second.partial({"h2.com"})
    assert "h2.com" in partial
    assert "h1.com" not in partial
    assert "# catch-all" in partial
    assert f'return 200 "{second.hash}";' in partial
    applier.running = renderer.render(build(snapshot(store, settings=NginxSettings(hsts=False))))
    assert applier.changed_hosts(second) is None  # the frame changed: everything is checked
