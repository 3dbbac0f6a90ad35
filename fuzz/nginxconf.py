"""A small nginx configuration tokenizer (ngx_conf_read_token's rules), for the ingress target's
marker check: which text of a rendered nginx.conf nginx reads as a double-quoted token, which as
a bare word, and what it skips as a comment."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its text as written (quotes and escapes kept) and how nginx reads it."""

    text: str
    quote: str  # '"', "'", "" (a bare word, or one of ; { }) or "lua" (a *_by_lua_block's body)
    line: int


class Unbalanced(ValueError):
    """A quote left open at the end of the text."""


# One token or gap at a time: a newline, blanks, a comment, ; { }, a double- or single-quoted
# token (a backslash escapes any character), a bare word (a quote inside one is an ordinary
# character), or what nginx would refuse: a quote never closed, a backslash at the very end.
_NEXT = re.compile(r"""(\n)|([ \t\r]+)|(\#[^\n]*)|([;{}])|("(?:[^"\\]|\\.)*")|('(?:[^'\\]|\\.)*')"""
                   r"""|((?:[^\s;{}"'\\\#]|\\.)(?:[^\s;{}\\]|\\.)*)""", re.S)


def tokens(text: str) -> list[Token]:
    """Every token of ``text``: comments (``#`` at the start of a word, to the end of the line) are
    skipped; a quoted token runs to the same unescaped quote, a backslash escaping any character;
    ``;``, ``{`` and ``}`` are tokens of their own outside quotes. The body of a ``*_by_lua_block``
    is Lua, which the Lua module reads with Lua's rules: it is one token (quote "lua")."""
    out: list[Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        m = _NEXT.match(text, i)
        if m is None:
            raise Unbalanced(f"line {line}: cannot read {text[i:i + 20]!r}")
        kind = m.lastindex
        if kind == 1:
            line += 1
        elif kind == 4 and m.group(4) == "{" and out and out[-1].quote == "" \
                and out[-1].text.endswith("_by_lua_block"):
            end = _lua_end(text, i + 1)
            out.append(Token(text[i + 1:end], "lua", line))
            line += text.count("\n", i, end + 1)
            i = end + 1
            continue
        elif kind in (4, 7):
            out.append(Token(m.group(kind), "", line))
        elif kind in (5, 6):
            quoted = m.group(kind)
            out.append(Token(quoted, quoted[0], line))
            line += quoted.count("\n")
        i = m.end()
    return out


def _lua_end(text: str, i: int) -> int:
    """Where the ``}`` closing a Lua block that starts at ``i`` is: braces counted outside Lua
    strings and ``--`` comments (long brackets are not used in the templates)."""
    depth, n = 1, len(text)
    while i < n:
        c = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise Unbalanced("a Lua block never closed")
