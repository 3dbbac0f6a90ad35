"""Property test: whatever text a record template holds, loading it either works or fails with
TemplateError (a FILE:LINE error, never a crash), and rendering what loads fails, if at all, only
with TemplateError (the query's SERVFAIL)."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from dnsplugins.template.config import FIELDS, FUNCS
from dnsplugins.template.gotemplate import TemplateError, parse_template
from tests.plugins.template.test_template import DATA

WORDS = [
    "{{",
    "}}",
    "{{-",
    "-}}",
    ".Name",
    ".Group.a",
    ".Match",
    ".Meta",
    ".Var.n",
    "index",
    "parseInt",
    "printf",
    "len",
    "eq",
    "and",
    "not",
    "slice",
    "print",
    "(",
    ")",
    "|",
    '"%s"',
    '"x"',
    "`r`",
    "0",
    "1",
    "16",
    "-1",
    "true",
    "nil",
    "$x",
    "if",
    "end",
    "/*",
    "*/",
    " ",
    "A",
]
# Whole actions as well as loose words: most random words never make an action that loads.
actions = st.lists(st.sampled_from(WORDS[4:-5]), min_size=1, max_size=5).map(lambda w: "{{ " + " ".join(w) + " }}")
texts = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(WORDS), max_size=14).map(" ".join),
    st.lists(st.one_of(actions, st.sampled_from(["A", " ", "x."])), max_size=4).map("".join),
)


@settings(max_examples=1500, deadline=None)
@given(text=texts)
def test_any_text_loads_or_fails_cleanly(text: str) -> None:
    try:
        tmpl = parse_template(text, FUNCS, FIELDS)
    except TemplateError:
        return
    with contextlib.suppress(TemplateError):
        assert isinstance(tmpl.render(DATA), str)
