"""Lexer rules, one case per rule (cf. the Caddyfile lexer tests CoreDNS inherits)."""

from __future__ import annotations

import pytest

from corefile import CorefileError, Token, tokenize

# (name, input, expected tokens as (text, line) or (text, line, quoted, end_line))
CASES: list[tuple[str, str, list[tuple[str, int] | tuple[str, int, bool, int]]]] = [
    ("empty", "", []),
    ("only whitespace", " \t\n\n  ", []),
    ("words and lines", "a b\n\tc", [("a", 1), ("b", 1), ("c", 2)]),
    ("blank lines count", "a\n\n\nb", [("a", 1), ("b", 4)]),
    ("leading BOM dropped", "\ufeffa b", [("a", 1), ("b", 1)]),
    ("BOM only at the start", "a \ufeffb", [("a", 1), ("\ufeffb", 1)]),
    ("CR ignored in CRLF", "a\r\nb\r\n", [("a", 1), ("b", 2)]),
    ("CR ignored inside a word", "ab\rcd", [("abcd", 1)]),
    ("CR ignored inside quotes", '"a\r\nb" c', [("a\nb", 1, True, 2), ("c", 2)]),
    ("comment to end of line", "a # b c\nd", [("a", 1), ("d", 2)]),
    ("comment line", "# all of it\nx", [("x", 2)]),
    ("comment mid-token", "foo#x y\nz", [("foo", 1), ("z", 2)]),
    ("comment right after a quote", '"a"#b\nc', [("a", 1, True, 1), ("c", 2)]),
    ("hash inside quotes", '"a # b"', [("a # b", 1, True, 1)]),
    ("quoted with spaces", 'x "a b" y', [("x", 1), ("a b", 1, True, 1), ("y", 1)]),
    ("quoted across lines", 'x "a\nb\nc" y\nz', [("x", 1), ("a\nb\nc", 1, True, 3), ("y", 3), ("z", 4)]),
    ("empty quoted", '""', [("", 1, True, 1)]),
    ("escaped quote", r'"say \"hi\""', [('say "hi"', 1, True, 1)]),
    ("other backslashes kept", r'"a\nb\tc"', [(r"a\nb\tc", 1, True, 1)]),
    ("double backslash then close", r'"a\\" b', [("a\\\\", 1, True, 1), ("b", 1)]),
    ("backslash outside quotes is literal", r"a\"b", [('a\\"b', 1)]),
    ("quote inside a word is literal", 'a"b c"', [('a"b', 1), ('c"', 1)]),
    ("closing quote ends the token", '"a"b', [("a", 1, True, 1), ("b", 1)]),
    ("braces separated", "a {\n}", [("a", 1), ("{", 1), ("}", 2)]),
    ("brace glued to a word", "example.org{\n}", [("example.org{", 1), ("}", 2)]),
    ("closing brace glued", "whoami}", [("whoami}", 1)]),
    ("placeholder braces", "rewrite name regex (.*) {1}.x", [("rewrite", 1), ("name", 1), ("regex", 1),
                                                                 ("(.*)", 1), ("{1}.x", 1)]),
    ("env references are not expanded here", "{$A}", [("{$A}", 1)]),
    ("quoted brace", '"{"', [("{", 1, True, 1)]),
]


def _expect(t: tuple[str, int] | tuple[str, int, bool, int]) -> Token:
    if len(t) == 2:
        return Token(t[0], "Corefile", t[1])
    return Token(t[0], "Corefile", t[1], quoted=t[2], end_line=t[3])


@pytest.mark.parametrize(("name", "text", "want"), CASES, ids=[c[0] for c in CASES])
def test_tokenize(name, text, want):
    got = tokenize(text, "Corefile")
    assert got == [_expect(t) for t in want]
    for tok in got:  # end_line is only ever different for quoted tokens
        assert tok.end_line >= tok.line


ERRORS = [
    ("unterminated on first line", '"abc', "Corefile:1 - "),
    ("unterminated after lines", 'a\nb\n"abc\ndef', "Corefile:3 - "),
    ("escaped closing quote", r'x "abc\"', "Corefile:1 - "),
]


@pytest.mark.parametrize(("name", "text", "prefix"), ERRORS, ids=[c[0] for c in ERRORS])
def test_tokenize_errors(name, text, prefix):
    with pytest.raises(CorefileError) as e:
        tokenize(text, "Corefile")
    assert str(e.value).startswith(prefix)
    assert "unterminated quoted string" in str(e.value)


def test_token_defaults():
    tok = Token("a", "f", 3)
    assert tok.end_line == 3
    assert not tok.quoted
    assert tok.paste == 0
    # The paste number tells pastes apart but is not part of a token's identity.
    assert Token("a", "f", 3, paste=7) == tok


def test_error_fields():
    err = CorefileError("conf/Corefile", 12, "boom")
    assert (err.file, err.line, err.message) == ("conf/Corefile", 12, "boom")
    assert str(err) == "conf/Corefile:12 - boom"
