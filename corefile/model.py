"""What the parser produces: server blocks made of directives made of tokens.

`corefile.parser` re-exports these classes; they live apart so that the parser module holds only
the grammar.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from corefile.lexer import Token


@dataclass
class Directive:
    """One occurrence of a directive: its line and any block after it."""

    name: str  # as written: directive names are case-sensitive
    tokens: list[Token]  # every token of the occurrence, name first, nested braces included


@dataclass
class ServerBlock:
    """``KEY... { directives }`` with snippets and imports already expanded."""

    keys: list[Token]  # one token per key, commas stripped
    directives: list[Directive]  # in Corefile order
    file: str  # where the block starts (its first key)
    line: int


@dataclass
class Corefile:
    """A parsed Corefile and the files it was read from."""

    blocks: list[ServerBlock]
    files: list[str]  # absolute paths of every file read, main file first, each once
    # The bytes of `files`, same order, kept so that digest() describes what was parsed rather than
    # what is on disk by the time someone asks.
    contents: list[bytes] = field(default_factory=list, repr=False, compare=False)

    def digest(self) -> str:
        """SHA-512 (hex) of the bytes of every file read, concatenated in order.

        For a Corefile without imports this is the hash of the file itself, the value CoreDNS's
        reload plugin reports; imported files are included so that editing one also counts as a
        change.
        """
        h = hashlib.sha512()
        for data in self.contents:
            h.update(data)
        return h.hexdigest()
