"""Property test: whatever text an `expr` line holds, loading it either works or fails with ExprError
(a FILE:LINE error, never a crash), and evaluating what loads never raises for any query."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dnsplugins.view.expression import Env, ExprError, compile_expr, truth
from tests.plugins.view.test_view import request

WORDS = [
    "client_ip()",
    "type()",
    "name()",
    "incidr",
    "(",
    ")",
    "[",
    "]",
    ",",
    "'A'",
    '"x."',
    "'10.0.0.0/8'",
    "==",
    "!=",
    "&&",
    "||",
    "!",
    "not",
    "in",
    "matches",
    "'^a'",
    "1",
    "0",
    "-",
    "+",
    "*",
    "/",
    "%",
    "?",
    ":",
    "true",
    "nil",
    "any",
    "#",
    "len",
    "split",
    "'.'",
    "metadata",
    "'k'",
    "startsWith",
    "<",
    ">=",
]
texts = st.one_of(st.text(max_size=40), st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join))


@settings(max_examples=1500, deadline=None)
@given(text=texts)
def test_any_text_loads_or_fails_cleanly_and_never_raises_when_run(text: str) -> None:
    try:
        node = compile_expr(text)
    except ExprError:
        return
    assert truth(node, Env(request())) in (True, False)
