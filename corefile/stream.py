"""The token stream the parser reads, with imports pasted in place.

An import replaces its own line by the tokens of a snippet or of files. Rather than splicing a
list (which makes runaway imports quadratic), each paste is pushed as a frame on a stack; the
parser sees one flat sequence. The stack doubles as the chain of imports being expanded, which
is how import cycles are found: importing something that is still on the stack can never end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from corefile.lexer import Token, same_line

# What a frame expands: ("file", real path) or ("snippet", name).
Label = tuple[str, str]


@dataclass
class _Frame:
    label: Label
    tokens: list[Token]
    pos: int = 0
    # Further pastes of the same import (the other files a glob matched), read after this one.
    # They are not on the stack yet: while the first file is read the others are not being expanded.
    pending: list[tuple[Label, list[Token]]] = field(default_factory=list)

    def remaining(self) -> Token | None:
        if self.pos < len(self.tokens):
            return self.tokens[self.pos]
        for _, tokens in self.pending:
            if tokens:
                return tokens[0]
        return None


class TokenStream:
    """Tokens in reading order: the main file with every import expanded where it stood."""

    def __init__(self, label: Label, tokens: list[Token]) -> None:
        self._frames = [_Frame(label, tokens)]
        self.prev: Token | None = None  # the token most recently taken

    def peek(self) -> Token | None:
        """The next token, or None at the end of input. Never changes the stack (see `expanding`)."""
        for frame in reversed(self._frames):
            tok = frame.remaining()
            if tok is not None:
                return tok
        return None

    def next(self) -> Token:
        """Take the next token; the caller has checked with peek() that there is one."""
        while self._frames:
            frame = self._frames[-1]
            if frame.pos < len(frame.tokens):
                tok = frame.tokens[frame.pos]
                frame.pos += 1
                self.prev = tok
                return tok
            if frame.pending:
                frame.label, frame.tokens = frame.pending.pop(0)
                frame.pos = 0
            else:
                self._frames.pop()
        raise IndexError("read past the end of the Corefile")

    def paste(self, segments: list[tuple[Label, list[Token]]]) -> None:
        """Insert `segments`, in order, right after the token just taken."""
        if segments:
            first_label, first_tokens = segments[0]
            self._frames.append(_Frame(first_label, first_tokens, pending=list(segments[1:])))

    def expanding(self, label: Label) -> bool:
        """Whether `label` is being expanded, i.e. is in the chain of imports that led here.

        A frame whose last token was just taken stays on the stack until the next `next()`, so the
        file or snippet that holds the import being processed still counts.
        """
        return any(frame.label == label for frame in self._frames)

    def at_line_start(self, tok: Token) -> bool:
        """Whether `tok` (normally the peeked token) is the first token of its line."""
        return self.prev is None or not same_line(self.prev, tok)
