"""Snippets and ``import``: everything one parse reads besides the main text.

``import ARG`` (the first token of its line, with exactly one argument) pastes

* the body of the snippet ``(ARG) { ... }`` if one was defined *above* -- snippets are known from
  the point of their definition on, in reading order, imported files included;
* otherwise the tokens of the file ARG, relative to the directory of the file holding the
  ``import`` token (tokens keep their own file, so an import inside a snippet resolves against
  the file that defined the snippet). ARG may contain one ``*``, which matches any run of
  characters within one path element, hidden names included; matches are pasted in sorted
  order. A missing plain file is an error, a pattern that matches nothing only a warning.

Pasted tokens keep the file and line they were written at, so errors point at the real place.
An import of something still being expanded (a file importing itself, directly or through
others; a snippet doing the same) is reported as a cycle. The limits of 10,000 snippet imports
and 100,000 file imports stop expansions that would end only after exhausting memory.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Mapping
from dataclasses import replace

from corefile.envsubst import substitute
from corefile.errors import CorefileError
from corefile.lexer import Token, same_line, tokenize
from corefile.stream import Label, TokenStream

log = logging.getLogger("corefile")

SNIPPET_IMPORT_LIMIT = 10_000
FILE_IMPORT_LIMIT = 100_000


def _decode(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorefileError(file, data[: e.start].count(b"\n") + 1, "not valid UTF-8") from None


class Sources:
    """The files read and snippets defined while parsing one Corefile."""

    def __init__(self, env: Mapping[str, str], main_file: str, main_dir: str) -> None:
        self.env = env
        self.main_file = main_file  # the name the main file's tokens carry
        self.main_dir = main_dir  # where the main file's relative imports are resolved
        self.files: list[str] = []
        self.contents: list[bytes] = []
        self._read: dict[str, list[Token]] = {}  # real path -> tokens, so each file is read once
        self._snippets: dict[str, tuple[Token, list[Token]]] = {}  # name -> (where defined, body)
        self._pastes = 0
        self._snippet_imports = 0
        self._file_imports = 0

    def add_main(self, path: str, data: bytes) -> list[Token]:
        """Record the main file (`data`, which lives at `path`) and return its tokens."""
        tokens = self._lex(data, self.main_file)
        self.files.append(os.path.abspath(path))
        self.contents.append(data)
        self._read[os.path.realpath(path)] = tokens
        return tokens

    def _lex(self, data: bytes, file: str) -> list[Token]:
        tokens = tokenize(_decode(data, file), file)
        return [t if (s := substitute(t.text, self.env)) == t.text else replace(t, text=s) for t in tokens]

    # -- snippets -----------------------------------------------------------------------------

    def define_snippet(self, where: Token, name: str, body: list[Token]) -> None:
        """Remember snippet `name`, defined by the key token `where`."""
        if name in self._snippets:
            first = self._snippets[name][0]
            raise CorefileError(where.file, where.line,
                                f"snippet '{name}' is already defined at {first.file}:{first.line}")
        for i, tok in enumerate(body):
            # Line start as it will be once pasted: the first body token begins a line of its own.
            starts_line = i == 0 or not same_line(body[i - 1], tok)
            if (tok.text == "import" and not tok.quoted and starts_line and i + 1 < len(body)
                    and body[i + 1].text == name and same_line(tok, body[i + 1])):
                raise CorefileError(tok.file, tok.line, f"snippet '{name}' imports itself")
        self._snippets[name] = (where, body)

    # -- import ------------------------------------------------------------------------------

    def expand_import(self, stream: TokenStream) -> None:
        """Read ``import ARG`` from `stream` (peeked at ``import``) and paste what ARG names."""
        keyword = stream.next()
        arg = stream.peek()
        if arg is None or not same_line(keyword, arg):
            raise CorefileError(keyword.file, keyword.line, "import needs a snippet name or a file path")
        stream.next()
        extra = stream.peek()
        if extra is not None and same_line(arg, extra):
            raise CorefileError(extra.file, extra.line,
                                "import takes exactly one argument: a snippet name or a file path")
        if arg.text == "":
            raise CorefileError(arg.file, arg.line, "import needs a non-empty snippet name or file path")
        if arg.text in self._snippets:
            stream.paste([self._snippet_paste(arg, stream)])
        else:
            stream.paste(self._file_pastes(arg, stream))

    def _fresh(self, tokens: list[Token]) -> list[Token]:
        """Copies of `tokens` marked with a new paste number (see Token.paste)."""
        self._pastes += 1
        return [replace(t, paste=self._pastes) for t in tokens]

    def _snippet_paste(self, arg: Token, stream: TokenStream) -> tuple[Label, list[Token]]:
        label: Label = ("snippet", arg.text)
        if stream.expanding(label):
            raise CorefileError(arg.file, arg.line, f"import cycle: snippet '{arg.text}' imports itself")
        self._snippet_imports += 1
        if self._snippet_imports > SNIPPET_IMPORT_LIMIT:
            raise CorefileError(arg.file, arg.line,
                                f"more than {SNIPPET_IMPORT_LIMIT} snippet imports; stopping expansion")
        return label, self._fresh(self._snippets[arg.text][1])

    def _file_pastes(self, arg: Token, stream: TokenStream) -> list[tuple[Label, list[Token]]]:
        base = self.main_dir if arg.file == self.main_file else os.path.dirname(arg.file)
        pattern = os.path.join(base, arg.text)  # an absolute ARG replaces `base`
        stars = arg.text.count("*")
        if stars > 1:
            raise CorefileError(arg.file, arg.line,
                                f"import pattern '{arg.text}' has {stars} '*'; at most one is allowed")
        if stars:
            # Only '*' is a wildcard: '?' and '[' in a file name are taken literally.
            before, _, after = pattern.partition("*")
            paths = sorted(glob.glob(glob.escape(before) + "*" + glob.escape(after), include_hidden=True))
            if not paths:
                log.warning("%s:%d - no files match import pattern '%s'", arg.file, arg.line, arg.text)
        elif os.path.exists(pattern):
            paths = [pattern]
        else:
            raise CorefileError(arg.file, arg.line,
                                f"import '{arg.text}': no snippet of that name is defined above, "
                                f"and file '{os.path.abspath(pattern)}' does not exist")
        segments: list[tuple[Label, list[Token]]] = []
        for path in paths:
            label: Label = ("file", os.path.realpath(path))
            if stream.expanding(label):
                raise CorefileError(arg.file, arg.line,
                                    f"import cycle: '{os.path.abspath(path)}' is already being imported")
            self._file_imports += 1
            if self._file_imports > FILE_IMPORT_LIMIT:
                raise CorefileError(arg.file, arg.line,
                                    f"more than {FILE_IMPORT_LIMIT} file imports; stopping expansion")
            segments.append((label, self._fresh(self._file_tokens(path, arg))))
        return segments

    def _file_tokens(self, path: str, arg: Token) -> list[Token]:
        real = os.path.realpath(path)
        if real not in self._read:
            if os.path.isdir(path):
                raise CorefileError(arg.file, arg.line, f"cannot import '{path}': it is a directory")
            name = os.path.abspath(path)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise CorefileError(arg.file, arg.line, f"cannot import '{name}': {e.strerror}") from e
            self._read[real] = self._lex(data, name)
            self.files.append(name)
            self.contents.append(data)
        return self._read[real]
