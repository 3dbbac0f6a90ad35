"""The controller's side of the request metrics (ingress/requestmetrics.py): nginx's batches
added up, and the exposition written as ingress-nginx's Go client writes it. What nginx counts
is checked through real nginx in test_nginx_metrics."""

from __future__ import annotations

import pytest

from ingress.metrics import Metrics
from ingress.model import Model
from ingress.requestmetrics import SLOTS, UNKNOWN, RequestMetrics, RouteBook, RouteLabels
from tests.ingress import objects as o
from tests.ingress.modelkit import model_of


def line(route: str, status: str = "200", method: str = "GET", canary: str = "-", count: int = 1) -> str:
    """One batch line: every histogram saw `count` values of 0.003 s / 42 bytes (all in a low bucket)."""
    slots = [0.0] * SLOTS
    slots[0] = count
    at = 1
    for size in (11, 11, 11, 11, 10, 10, 7):
        bucket = 0 if size == 11 else 4 if size == 10 else 1
        slots[at], slots[at + 1], slots[at + 2 + bucket] = 0.003 * count, count, count
        at += 2 + size + 1
    return " ".join([route, status, method, canary, *(f"{v:g}" for v in slots)])


def collector() -> RequestMetrics:
    m = RequestMetrics("portolan.dev/ingress-controller", "ingress-ns", "pod-1")
    labels = {"r1": RouteLabels("foo.com", "default", "web", "a", "/a"),
              "r2": RouteLabels("bar.com", "default", "web", "b", '/quote"back\\slash')}  # fmt: skip
    m.book.labels = lambda route: labels.get(route, RouteLabels("", "", "", "", ""))  # type: ignore[method-assign]
    return m


@pytest.mark.parametrize(
    ("text", "taken"),
    [
        (line("r1"), 1),
        (line("r1") + "\n" + line("r1", status="404"), 2),
        ("r1 200 GET - 1 2 3", 0),  # too few slots: skipped
        (line("r1").replace("0.003", "x"), 0),  # not a number: skipped
        ("dropped 7", 0),
        ("", 0),
    ],
)
def test_take(text: str, taken: int) -> None:
    assert collector().take(text) == taken


def test_series_add_up_and_unknown_routes_share_one() -> None:
    m = collector()
    m.take("\n".join([line("r1", count=2), line("r1", count=3), line("gone1"), line("-"), line("gone2")]))
    text = "".join(m.exposition())
    const = ('controller_class="portolan.dev/ingress-controller",controller_namespace="ingress-ns",'
             'controller_pod="pod-1"')
    assert ('nginx_ingress_controller_requests{status="200",method="GET",path="/a",namespace="default",'
            f'ingress="web",service="a",canary="",host="foo.com",{const}}} 5\n') in text  # fmt: skip
    # Routes the controller does not know (gone, or none) count together under empty labels.
    assert ('nginx_ingress_controller_requests{status="200",method="GET",path="",namespace="",ingress="",'
            f'service="",canary="",host="",{const}}} 3\n') in text  # fmt: skip
    # Counters keep ingress-nginx's names (no _total); buckets are cumulative, le as Go writes it.
    assert "# TYPE nginx_ingress_controller_requests counter\n" in text
    assert 'nginx_ingress_controller_request_duration_seconds_bucket{status="200",method="GET",path="/a"' in text
    assert f'host="foo.com",{const},le="0.005"}} 5\n' in text
    assert f'host="foo.com",{const},le="+Inf"}} 5\n' in text
    assert 'nginx_ingress_controller_request_duration_seconds_count{status="200",method="GET",path="/a",' in text


def test_label_values_are_escaped() -> None:
    m = collector()
    m.take(line("r2"))
    assert 'path="/quote\\"back\\\\slash"' in "".join(m.exposition())


def test_only_the_names_asked_for() -> None:
    metrics = Metrics(controller_class="c", namespace="n", pod="p")
    metrics.requests.take(line("x"))
    metrics.reloads.inc()
    text = b"".join(metrics.exposition(frozenset({"portolan_ingress_reloads_total"}))).decode()
    assert "portolan_ingress_reloads_total 1.0" in text
    assert "nginx_ingress_controller" not in text
    text = b"".join(metrics.exposition(frozenset({"nginx_ingress_controller_requests"}))).decode()
    assert "nginx_ingress_controller_requests{" in text
    assert "_bucket" not in text
    assert "portolan_ingress" not in text


def test_routes_of_the_model_before_stay_known() -> None:
    # Counts taken just after a change may still name a route the new model has dropped.
    def routes(model: Model) -> dict[str, str]:
        server = model.server("foo.com")
        assert server is not None
        return {loc.path: loc.route for loc in server.locations if loc.route}

    before = model_of(o.ingress("web", o.rule("foo.com", o.path("/a", "a"))))
    after = model_of(o.ingress("web", o.rule("foo.com", o.path("/b", "a"))))
    gone, kept = routes(before)["/a"], routes(after)["/b"]
    assert gone not in routes(after).values()
    book = RouteBook()
    book.update(before)
    book.update(after)
    assert book.labels(gone) == RouteLabels("foo.com", "default", "web", "a", "/a")
    assert book.labels(kept) == RouteLabels("foo.com", "default", "web", "a", "/b")
    assert book.labels("never") == UNKNOWN
