"""Split Corefile text into tokens.

The rules are those of the Caddyfile lexer CoreDNS uses:

* whitespace separates tokens; a leading byte-order mark is dropped; every ``\\r`` is ignored (also
  inside quotes, so a CRLF file reads exactly like its LF twin);
* ``#`` starts a comment that runs to the end of the line, anywhere outside quotes -- even in the
  middle of a word: ``foo#x`` is the token ``foo``;
* a token that *starts* with ``"`` runs to the next unescaped ``"`` and may hold spaces and
  newlines. Inside it only ``\\"`` is an escape; any other backslash is kept together with the
  character after it (so ``\\\\"`` is two backslashes followed by the closing quote). A ``"`` in
  the middle of a bare word is an ordinary character, and a closing quote ends the token even
  when a letter follows (``"a"b`` is the two tokens ``a`` and ``b``);
* braces get no special treatment here. ``{`` and ``}`` are braces only when they stand alone
  (whitespace around them), exactly as in Caddy: ``example.org{`` is a single token. The parser
  recognises that one mistake on a server block key and says so. A quoted ``"{"`` is *not* a brace:
  quoting is how a literal brace is passed as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from corefile.errors import CorefileError


@dataclass(frozen=True, slots=True)
class Token:
    """One word of a Corefile and where it was written."""

    text: str
    file: str
    line: int  # 1-based line where the token starts
    quoted: bool = False
    end_line: int = 0  # line where the token ends; a quoted token may span lines. 0 means `line`.
    # Which `import` pasted this token (0: read in place). Two pastes of the same text carry the same
    # file and line numbers, so without this a one-line snippet imported twice in a row would look
    # like a single line. Not part of equality: a pasted token still equals the token it copies.
    paste: int = field(default=0, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.end_line < self.line:
            object.__setattr__(self, "end_line", self.line)


def same_line(prev: Token, nxt: Token) -> bool:
    """True when `nxt` continues the line `prev` ends on (same file, same paste, same line)."""
    return prev.file == nxt.file and prev.paste == nxt.paste and nxt.line == prev.end_line


def is_open(tok: Token) -> bool:
    """An opening brace: a bare ``{`` (a quoted one is an ordinary argument)."""
    return tok.text == "{" and not tok.quoted


def is_close(tok: Token) -> bool:
    """A closing brace: a bare ``}``."""
    return tok.text == "}" and not tok.quoted


def tokenize(text: str, file: str) -> list[Token]:
    """All tokens of `text`, which came from `file` (used only for positions in tokens and errors)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r", "")
    tokens: list[Token] = []
    pos, line = 0, 1
    while pos < len(text):
        ch = text[pos]
        if ch == "\n":
            line += 1
            pos += 1
        elif ch.isspace():
            pos += 1
        elif ch == "#":
            end = text.find("\n", pos)
            pos = len(text) if end < 0 else end
        elif ch == '"':
            tok, pos = _quoted(text, pos, file, line)
            tokens.append(tok)
            line = tok.end_line
        else:
            start = pos
            while pos < len(text) and not text[pos].isspace() and text[pos] != "#":
                pos += 1
            tokens.append(Token(text[start:pos], file, line))
    return tokens


def _quoted(text: str, pos: int, file: str, line: int) -> tuple[Token, int]:
    """The quoted token whose opening quote is at `pos`, and the position just after its closing quote."""
    start_line = line
    out: list[str] = []
    pos += 1
    while pos < len(text):
        ch = text[pos]
        if ch == '"':
            return Token("".join(out), file, start_line, quoted=True, end_line=line), pos + 1
        if ch == "\\" and pos + 1 < len(text):
            escaped = text[pos + 1]
            # Only a quote is really escaped; the pair is consumed either way so that the second
            # character of "\\" cannot start an escape of its own.
            out.append('"' if escaped == '"' else ch + escaped)
            line += escaped == "\n"
            pos += 2
            continue
        line += ch == "\n"
        out.append(ch)
        pos += 1
    raise CorefileError(file, start_line, "unterminated quoted string: missing closing '\"'")
