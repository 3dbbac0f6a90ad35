"""RFC 1035 §5.1 master-file lexing: entries of tokens, with the line each token starts on.

An entry is one logical line: parentheses let it span physical lines, `;` starts a comment, a
quoted string is one token (which may hold spaces and `;`), and a backslash escapes the next
character (or `\\DDD`, a decimal byte). Escapes are kept in the token text: whether `\\.` is a
literal dot or a label separator depends on whether the token is read as a name or as text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass


class ZoneFileError(Exception):
    """A problem at a place in a zone file; `str(e)` is "FILE:LINE - MESSAGE"."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line} - {message}")
        self.file = file
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class Tok:
    """One token of a zone file line."""

    text: str  # escapes kept; a quoted token without its quotes
    quoted: bool
    line: int


@dataclass(slots=True)
class Entry:
    """One logical entry of a zone file (parentheses joined), as tokens."""

    tokens: list[Tok]
    blank_owner: bool  # the entry's line starts with white space: the previous owner is meant
    line: int


_SCAN = re.compile(r"""
    (?P<space>[ \t\r\f\v]+)
  | (?P<newline>\n)
  | (?P<comment>;[^\n]*)
  | (?P<open>\()
  | (?P<close>\))
  | "(?P<quoted>(?:[^"\\]|\\[\s\S])*)"
  | (?P<badquote>")
  | (?P<word>(?:[^\s;()"\\]|\\[\s\S])+)
  | (?P<dangling>\\)
""", re.X)


_ERRORS = {"badquote": "unterminated quoted string", "dangling": "dangling '\\' at the end of the file"}


class _Lexer:
    """The state of one scan that parentheses change: how deep, since which line, where the entry began."""

    __slots__ = ("depth", "entry_blank", "file", "open_line", "start")

    def __init__(self, file: str) -> None:
        self.file = file
        self.depth = 0
        self.open_line = 0
        self.start = 0
        self.entry_blank = False

    def paren(self, kind: str | None, line: int, blank: bool, first: bool) -> None:
        """An opening or closing parenthesis on `line` (rare next to words: kept out of the main loop);
        `first`: no token of the entry yet."""
        if kind == "open":
            if self.depth == 0:
                self.open_line = line
            self.depth += 1
            if first:
                self.start, self.entry_blank = line, blank
            return
        if self.depth == 0:
            raise ZoneFileError(self.file, line, "unbalanced ')' without '('")
        self.depth -= 1

    def entries(self, text: str) -> Iterator[Entry]:
        line = 1
        tokens: list[Tok] = []
        line_start = True  # at the first character of a physical line
        blank = False  # that line began with white space
        for m in _SCAN.finditer(text):
            kind = m.lastgroup
            if line_start:
                blank = kind == "space"
                line_start = False
            if kind == "space" or kind == "comment":
                continue
            if kind == "newline":
                line += 1
                line_start = True
                if self.depth == 0 and tokens:
                    yield Entry(tokens, self.entry_blank, self.start)
                    tokens = []
                continue
            if kind == "open" or kind == "close":
                self.paren(kind, line, blank, not tokens)
                continue
            if kind in _ERRORS:
                raise ZoneFileError(self.file, line, _ERRORS[kind])
            if not tokens and self.depth == 0:
                self.start, self.entry_blank = line, blank
            if kind == "quoted":
                value = m.group("quoted")
                tokens.append(Tok(value, True, line))
                line += value.count("\n")  # a quoted string may hold (escaped or raw) newlines
            else:
                tokens.append(Tok(m.group("word"), False, line))
        if self.depth:
            raise ZoneFileError(self.file, self.open_line, "unterminated parenthesis: '(' is never closed")
        if tokens:
            yield Entry(tokens, self.entry_blank, self.start)


def entries(text: str, file: str) -> Iterator[Entry]:
    """The entries of `text`, in order. Raises ZoneFileError for unbalanced parentheses or quotes."""
    return _Lexer(file).entries(text)


_ESCAPE = re.compile(r"\\(\d{3}|[\s\S])")


def unescape(text: str) -> bytes:
    """Token text as bytes: `\\DDD` is a decimal byte, `\\X` is X. Raises ValueError for `\\DDD` > 255."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(text):
        out += text[pos:m.start()].encode("utf-8", "surrogateescape")
        esc = m.group(1)
        if len(esc) == 3 and esc.isdigit():
            value = int(esc)
            if value > 255:
                raise ValueError(f"escape \\{esc} is not a byte")
            out.append(value)
        else:
            out += esc.encode("utf-8", "surrogateescape")
        pos = m.end()
    out += text[pos:].encode("utf-8", "surrogateescape")
    return bytes(out)


def split_labels(text: str) -> tuple[list[bytes], bool]:
    """A name's labels (unescaped) and whether it is absolute (ends in an unescaped dot).

    Raises ValueError for an empty label in the middle ("a..b") or a bad escape.
    """
    if text == ".":
        return [], True
    labels: list[bytes] = []
    pos = 0
    current: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            width = 4 if text[i + 1:i + 4].isdigit() and len(text[i + 1:i + 4]) == 3 else 2
            current.append(text[i:i + width])
            i += width
            continue
        if c == ".":
            if not current:
                raise ValueError("empty label")
            labels.append(unescape("".join(current)))
            current = []
            pos = i + 1
        else:
            current.append(c)
        i += 1
    if current:
        labels.append(unescape("".join(current)))
        return labels, False
    if pos == 0:
        raise ValueError("empty name")
    return labels, True
