"""docs/annotations.md is ingress/catalog.py's output, and the catalog agrees with the code:
every ingress-nginx annotation has exactly one status, every annotation the code parses is in
ingress-nginx's list, and every "differs" note is about one the code serves."""

from __future__ import annotations

from pathlib import Path

from ingress import catalog

DOC = Path(__file__).resolve().parents[2] / "docs" / "annotations.md"


def test_docs_annotations_is_generated() -> None:
    # On a difference: python -m ingress.catalog > docs/annotations.md
    assert DOC.read_text() == catalog.markdown()


def test_every_annotation_has_one_status() -> None:
    names = set(catalog.INGRESS_NGINX)
    assert len(names) == len(catalog.INGRESS_NGINX)
    served = catalog.served()
    assert served <= names  # nothing we parse is missing from the list
    assert not (served & set(catalog.NOT_SUPPORTED)), "served, yet listed as not supported"
    assert set(catalog.NOT_SUPPORTED) <= names
    assert set(catalog.DIFFERS) <= served, "a difference noted for an annotation not served"
    assert names - served == set(catalog.NOT_SUPPORTED), "an annotation without a status"
    assert all(catalog.NOT_SUPPORTED.values())
    assert all(catalog.DIFFERS.values())


def test_counts() -> None:
    counts = catalog.counts()
    assert sum(counts.values()) == len(catalog.INGRESS_NGINX)
    assert counts["supported"] + counts["partly supported"] == len(catalog.served())
