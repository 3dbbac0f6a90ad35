"""Dispenser: how a plugin's setup() walks the tokens of its directive.

A Dispenser holds every occurrence of one directive in one server block, one after the other,
and a cursor that starts *before* the first token. The usual shape of a setup function::

    while d.next():                      # each occurrence: the cursor is on the directive name
        zones = d.remaining_args()       # the rest of that line
        while d.next_block():            # each line of the { } block after it
            key, args = d.val(), d.remaining_args()
            if key == "tls":
                level = d.nesting        # depth of this line (1 here)
                while d.next_block(level):   # each line of the block opened on the `tls` line
                    ...

Lines and blocks:

* Two tokens are on the same line when they come from the same file and the same import paste
  and the second starts on the line where the first ends (a quoted token may span lines).
* ``next()`` moves one token, anywhere; braces are not special to it.
* ``next_arg()`` moves only to a token on the current line that is not a bare ``{`` or ``}``:
  arguments end at the end of the line, before a block opens, and before a ``}`` that closes a
  block on the same line (``health { lameduck 5s }``).
* ``next_line()`` moves only to a token on another line -- whatever it is, braces included.
* Before the first ``next()``, ``next_arg()`` and ``next_line()`` behave like ``next()``, as in
  Caddy.

``nesting`` is how many blocks enclose the current token; for a brace it counts the blocks
outside it. ``next_block(level)`` walks the entries of a block whose opening line is at depth
`level` (0: the directive's own line). An entry is the first token of a line inside that block,
or the first token after a ``{`` or ``}`` on a line shared with braces, so
``forward . 1.2.3.4 { tls { a b } policy x }`` has the entries ``tls`` and ``policy`` at depth 1
and ``a`` at depth 2. Each call does one of:

* on the opening line (``nesting == level``): if a ``{`` follows on this line -- unread arguments
  before it are skipped -- step into the block and return True on its first entry; for an empty
  ``{ }`` consume both braces and return False; without a block return False and do not move;
* inside the block (``nesting > level``): skip whatever is left of the current entry (its unread
  arguments, and any nested block the caller stepped into but did not finish) and return True
  on the next entry; at the block's closing ``}`` move onto it and return False, so the walk
  continues after the block.

Skipping unread arguments means a plugin must check its own argument counts (``args`` /
``remaining_args``). A nested block the plugin did not step into (it never called
``next_block(level + 1)`` on that line) is a user error: ``next_block`` raises CorefileError at
its ``{`` ("plugin/NAME: unexpected '{' after 'KEY'").
"""

from __future__ import annotations

from collections.abc import Sequence

from corefile.errors import CorefileError
from corefile.lexer import Token, is_close, is_open, same_line


def _depths(tokens: Sequence[Token]) -> list[int]:
    """For each token, how many blocks enclose it (a brace counts the blocks outside it)."""
    out: list[int] = []
    depth = 0
    for tok in tokens:
        if is_close(tok):
            depth = max(depth - 1, 0)
        out.append(depth)
        if is_open(tok):
            depth += 1
    return out


class Dispenser:
    """A cursor over the tokens of all occurrences of directive `name` in one server block."""

    def __init__(self, name: str, tokens: list[Token]) -> None:
        self.name = name
        self._tokens = list(tokens)
        self._depth = _depths(self._tokens)
        self._cursor = -1
        self._entry = -1  # the block entry next_block last stepped onto: the property unknown_property names

    # -- moving ------------------------------------------------------------------------------

    def next(self) -> bool:
        """Move to the next token, on any line; False (no move) at the end."""
        if self._cursor + 1 < len(self._tokens):
            self._cursor += 1
            return True
        return False

    def _continues_line(self) -> bool:
        i = self._cursor
        return i >= 0 and i + 1 < len(self._tokens) and same_line(self._tokens[i], self._tokens[i + 1])

    def next_arg(self) -> bool:
        """Move to the next token if it is an argument on the current line (not a brace)."""
        if self._cursor < 0:
            return self.next()
        if not self._continues_line():
            return False
        nxt = self._tokens[self._cursor + 1]
        if is_open(nxt) or is_close(nxt):
            return False
        self._cursor += 1
        return True

    def next_line(self) -> bool:
        """Move to the next token if it starts another line (it may be a brace)."""
        if self._cursor < 0:
            return self.next()
        if self._cursor + 1 >= len(self._tokens) or self._continues_line():
            return False
        self._cursor += 1
        return True

    @property
    def nesting(self) -> int:
        """How many blocks enclose the current token (0 on a directive's own line)."""
        return self._depth[self._cursor] if 0 <= self._cursor < len(self._tokens) else 0

    def _starts_entry(self, i: int) -> bool:
        tok = self._tokens[i]
        if is_open(tok) or is_close(tok):
            return False
        if i == 0:
            return True
        prev = self._tokens[i - 1]
        return is_open(prev) or is_close(prev) or not same_line(prev, tok)

    def next_block(self, nesting: int = 0) -> bool:
        """Move to the next entry of the block opened on a line at depth `nesting` (see module doc)."""
        if not 0 <= self._cursor < len(self._tokens) or self._depth[self._cursor] < nesting:
            return False
        if self._depth[self._cursor] == nesting:
            return self._enter_block()
        for i in range(self._cursor + 1, len(self._tokens)):
            tok, depth = self._tokens[i], self._depth[i]
            if is_close(tok) and depth == nesting:
                self._cursor = i
                self._entry = -1
                return False
            if is_open(tok) and depth == nesting + 1:
                raise self._unwalked_block(i)
            if depth == nesting + 1 and self._starts_entry(i):
                self._cursor = self._entry = i
                return True
        return False  # unreachable for balanced tokens, which the parser guarantees

    def _enter_block(self) -> bool:
        """On a block's opening line: step past its `{` (see next_block)."""
        i = self._cursor
        while not is_open(self._tokens[i]):
            nxt = i + 1
            if nxt >= len(self._tokens) or not same_line(self._tokens[i], self._tokens[nxt]) \
                    or is_close(self._tokens[nxt]):
                return False
            i = nxt
        if i + 1 >= len(self._tokens):
            return False
        self._cursor = i + 1
        if is_close(self._tokens[self._cursor]):
            return False  # `{ }`: the walk is already over
        self._entry = self._cursor
        return True

    def _unwalked_block(self, brace: int) -> CorefileError:
        depth = self._depth[brace]
        start = brace
        while start > 0 and not (self._depth[start] == depth and self._starts_entry(start)):
            start -= 1
        where = self._tokens[brace]
        return CorefileError(where.file, where.line,
                             f"plugin/{self.name}: unexpected '{{' after '{self._tokens[start].text}'")

    # -- reading -----------------------------------------------------------------------------

    def token(self) -> Token:
        """The current token; before the first next(), an empty token placed at the first one."""
        if 0 <= self._cursor < len(self._tokens):
            return self._tokens[self._cursor]
        if self._tokens:
            return Token("", self._tokens[0].file, self._tokens[0].line)
        return Token("", "", 0)

    def val(self) -> str:
        """The current token's text ("" before the first next())."""
        return self.token().text

    def line(self) -> int:
        return self.token().line

    def file(self) -> str:
        return self.token().file

    def args(self, n: int) -> list[str] | None:
        """The next `n` arguments on this line, or None (and no move) if there are fewer."""
        start = self._cursor
        out: list[str] = []
        for _ in range(n):
            if not self.next_arg():
                self._cursor = start
                return None
            out.append(self.val())
        return out

    def remaining_args(self) -> list[str]:
        """Every further argument on this line, stopping before a `{` or `}`."""
        out: list[str] = []
        while self.next_arg():
            out.append(self.val())
        return out

    def occurrences(self) -> int:
        """How many times the directive appears."""
        return len(self.occurrence_starts())

    def occurrence_starts(self) -> list[Token]:
        """The first token (the directive's name) of each occurrence: depth-0 tokens that begin a line."""
        return [tok for i, (tok, depth) in enumerate(zip(self._tokens, self._depth, strict=True))
                if depth == 0 and (i == 0 or not same_line(self._tokens[i - 1], tok)) and not is_close(tok)]

    # -- errors (returned, for the caller to raise) --------------------------------------------

    def err(self, message: str) -> CorefileError:
        return self.err_at(self.token(), message)

    def err_at(self, tok: Token, message: str) -> CorefileError:
        """An error of this plugin at `tok` (e.g. the directive, for a check made after its block)."""
        return CorefileError(tok.file, tok.line, f"plugin/{self.name}: {message}")

    def arg_err(self) -> CorefileError:
        return self.err(f"Wrong argument count or unexpected line ending after '{self.val()}'")

    def syntax_err(self, expected: str) -> CorefileError:
        return self.err(f"Syntax error: Unexpected token '{self.val()}', expecting '{expected}'")

    def unknown_property(self) -> CorefileError:
        """CoreDNS's error for a block line it does not know, naming the line's first token (the
        property) wherever the cursor is: a caller may have read the line's arguments already."""
        if 0 <= self._entry < len(self._tokens) and self._entry <= self._cursor:
            return self.err_at(self._tokens[self._entry], f"unknown property '{self._tokens[self._entry].text}'")
        return self.err(f"unknown property '{self.val()}'")
