from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubewatch import FieldSelector, LabelSelector, SelectorError

LABELS = {"app": "web", "tier": "front", "version": "3"}

LABEL_CASES = [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app = web", True),
    ("app!=web", False),
    ("app!=db", True),
    ("missing!=x", True),  # != matches objects without the key
    ("app in (web,db)", True),
    ("app in (db)", False),
    ("app notin (db, cache)", True),
    ("missing notin (x)", True),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("app=web,tier=front", True),
    ("app=web,tier=back", False),
    ("app in (web),!missing,tier", True),
    ("version>2", True),
    ("version<3", False),
    ("example.com/team=x", False),
    ("tier=", False),  # "key=" with an empty value is valid and matches only the empty value
    ("tier==", False),
]


@pytest.mark.parametrize(("text", "expected"), LABEL_CASES)
def test_label_selector_matches(text: str, expected: bool) -> None:
    assert LabelSelector.parse(text).matches(LABELS) is expected


@pytest.mark.parametrize("text", ["app=web=x", "in (x)", "app in x", "app in (a", "a)b", "=web", "app in (a b)"])
def test_label_selector_rejects(text: str) -> None:
    with pytest.raises(SelectorError):
        LabelSelector.parse(text)


@given(
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sampled_from(["x", "y", "z"]), max_size=3),
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["x", "y"]),
)
def test_label_equality_semantics(labels: dict[str, str], key: str, value: str) -> None:
    assert LabelSelector.parse(f"{key}={value}").matches(labels) == (labels.get(key) == value)
    assert LabelSelector.parse(f"{key}!={value}").matches(labels) == (labels.get(key) != value)
    assert LabelSelector.parse(f"{key} in ({value},q)").matches(labels) == (labels.get(key) in (value, "q"))
    assert LabelSelector.parse(key).matches(labels) == (key in labels)


FIELDS = {"metadata.name": "web", "metadata.namespace": "shop", "status.phase": "Running"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metadata.name=web", True),
        ("metadata.name==web", True),
        ("metadata.name!=web", False),
        ("status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown", True),
        ("status.phase!=Running", False),
        ("metadata.namespace=shop,metadata.name=db", False),
        ("spec.nodeName=", True),  # absent field compares as ""
    ],
)
def test_field_selector_matches(text: str, expected: bool) -> None:
    assert FieldSelector.parse(text).matches(FIELDS) is expected


def test_field_selector_escapes_and_fields() -> None:
    sel = FieldSelector.parse(r"metadata.name=a\,b,status.phase!=x")
    assert sel.matches({"metadata.name": "a,b"})
    assert sel.fields == {"metadata.name", "status.phase"}
    with pytest.raises(SelectorError):
        FieldSelector.parse("metadata.name")
    with pytest.raises(SelectorError):
        FieldSelector.parse(r"metadata.name=a\qb")
