"""Parse Corefile text into server blocks (the grammar; see `imports` for snippets and import).

Grammar, in reading order with imports already pasted:

* A server block is ``KEY [KEY...] { DIRECTIVES }``. Keys are separated by spaces and/or commas
  and end with the line, except that a key ending in a comma continues the list on the next
  line. The ``{`` may stand on the key line or on the next one. A block whose keys are not
  followed by ``{`` has no braces: the rest of the input is its body (CoreDNS allows this for a
  file holding one block). Keys only, then end of input, is a block without directives.
* ``(NAME) { ... }`` in place of a server block defines a snippet (its key must be alone).
* A directive is its name and arguments up to the end of the line, plus any ``{ ... }`` opened on
  that line; blocks nest freely and may hold line breaks. A ``}`` on the directive's own line
  (outside its blocks) ends the directive and closes the enclosing server block, so
  ``. { whoami }`` is accepted (CoreDNS itself rejects that one-line form).
* ``import ARG`` as the first token of a line -- between server blocks, between directives, or on
  a line inside a directive's block -- is replaced by the snippet or files ARG names. Elsewhere
  ``import`` is an ordinary word.

Directive names and arguments are not checked here, nor are duplicate zones: that is the job of
whoever turns the blocks into a server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace

from corefile.errors import CorefileError
from corefile.imports import Sources
from corefile.lexer import Token, is_close, is_open
from corefile.model import Corefile, Directive, ServerBlock
from corefile.stream import TokenStream

__all__ = ["Corefile", "Directive", "ServerBlock", "load", "parse"]


def _unmatched_close(tok: Token) -> CorefileError:
    return CorefileError(tok.file, tok.line, "Unexpected '}': there is no '{' for it to close")


class _Parser:
    def __init__(self, stream: TokenStream, sources: Sources) -> None:
        self.stream = stream
        self.sources = sources

    def _is_import(self, tok: Token) -> bool:
        return tok.text == "import" and not tok.quoted and self.stream.at_line_start(tok)

    def _end_of_input(self, opener: Token) -> CorefileError:
        last = self.stream.prev or opener
        ends = f"{last.file}:{last.line}"
        return CorefileError(opener.file, opener.line,
                             f"Unexpected EOF: this '{{' is never closed (input ends at {ends})")

    def blocks(self) -> list[ServerBlock]:
        out: list[ServerBlock] = []
        while (tok := self.stream.peek()) is not None:
            if self._is_import(tok):
                self.sources.expand_import(self.stream)
            elif (block := self._server_block()) is not None:
                out.append(block)
        return out

    def _server_block(self) -> ServerBlock | None:
        """A server block, or None for a snippet definition (which is recorded instead)."""
        first = self.stream.peek()
        assert first is not None
        if is_close(first):
            raise _unmatched_close(first)
        if is_open(first):
            raise CorefileError(first.file, first.line,
                                "Unexpected '{': a server block needs a key before it")
        keys = self._keys()
        snippet = self._snippet_name(keys)
        if snippet is not None:
            self._snippet(keys[0], snippet)
            return None
        nxt = self.stream.peek()
        directives = self._body(self.stream.next() if nxt is not None and is_open(nxt) else None)
        return ServerBlock(keys=keys, directives=directives, file=first.file, line=first.line)

    # -- keys --------------------------------------------------------------------------------

    def _keys(self) -> list[Token]:
        keys: list[Token] = []
        want_more = False  # the previous key ended with a comma
        first = True
        while (tok := self.stream.peek()) is not None:
            if not first:
                if want_more and (is_open(tok) or is_close(tok)):
                    raise CorefileError(tok.file, tok.line,
                                        f"Expected another key after ',' but found '{tok.text}' - "
                                        "is there an extra comma?")
                if is_open(tok) or is_close(tok) or (not want_more and self.stream.at_line_start(tok)):
                    break
                if self._is_import(tok):  # keys continued on the next line may come from an import
                    self.sources.expand_import(self.stream)
                    continue
            first = False
            self.stream.next()
            want_more = self._add_keys(tok, keys)
        if want_more:
            last = self.stream.prev
            assert last is not None
            raise CorefileError(last.file, last.line, "Unexpected EOF: expected another key after ','")
        return keys

    @staticmethod
    def _add_keys(tok: Token, keys: list[Token]) -> bool:
        """Append the keys in `tok` (split at commas); True if it ends with a comma."""
        if tok.text == "":
            raise CorefileError(tok.file, tok.line, "empty server block key")
        if tok.text.endswith("{") and len(tok.text) > 1:
            # Caddy's lexer makes "example.org{" one token; say so instead of failing later.
            raise CorefileError(tok.file, tok.line,
                                f"key '{tok.text}' ends with '{{': put a space before the opening brace")
        pieces = tok.text.split(",")
        for i, piece in enumerate(pieces):
            if piece:
                keys.append(replace(tok, text=piece))
            elif 0 < i < len(pieces) - 1:
                raise CorefileError(tok.file, tok.line, f"empty key between commas in '{tok.text}'")
        return tok.text.endswith(",")

    # -- snippets ----------------------------------------------------------------------------

    @staticmethod
    def _snippet_name(keys: list[Token]) -> str | None:
        for key in keys:
            if key.text.startswith("(") and key.text.endswith(")"):
                if len(keys) > 1:
                    raise CorefileError(key.file, key.line,
                                        f"snippet definition '{key.text}' must be the only key on its line")
                if len(key.text) == 2:
                    raise CorefileError(key.file, key.line, "snippet name is empty")
                return key.text[1:-1]
        return None

    def _snippet(self, key: Token, name: str) -> None:
        opener = self.stream.peek()
        if opener is None or not is_open(opener):
            at = opener or key
            raise CorefileError(at.file, at.line,
                                f"Syntax error: snippet '{name}' needs a '{{ ... }}' block after its name")
        self.stream.next()
        # The body is kept as written: imports inside it are expanded wherever the snippet is pasted.
        body: list[Token] = []
        depth = 1
        while (tok := self.stream.peek()) is not None:
            self.stream.next()
            depth += is_open(tok) - is_close(tok)
            if depth == 0:
                self.sources.define_snippet(key, name, body)
                return
            body.append(tok)
        raise self._end_of_input(opener)

    # -- block bodies and directives ---------------------------------------------------------

    def _body(self, opener: Token | None) -> list[Directive]:
        """Directives up to the `}` matching `opener`, or to the end of input if there is none."""
        directives: list[Directive] = []
        while (tok := self.stream.peek()) is not None:
            if is_close(tok):
                if opener is None:
                    raise _unmatched_close(tok)
                self.stream.next()
                return directives
            if self._is_import(tok):
                self.sources.expand_import(self.stream)
            elif is_open(tok):
                raise CorefileError(tok.file, tok.line,
                                    "Unexpected '{': expected a directive name (a block must open on the "
                                    "line of its directive)")
            else:
                directives.append(self._directive())
        if opener is not None:
            raise self._end_of_input(opener)
        return directives

    def _directive(self) -> Directive:
        name = self.stream.next()
        tokens = [name]
        openers: list[Token] = []  # the `{` of every block still open
        while (tok := self.stream.peek()) is not None:
            line_start = self.stream.at_line_start(tok)
            if not openers and (line_start or is_close(tok)):
                break
            if self._is_import(tok):  # only reached inside a block: a line of the block is imported
                self.sources.expand_import(self.stream)
                continue
            tokens.append(self.stream.next())
            if is_open(tok):
                openers.append(tok)
            elif is_close(tok):
                openers.pop()
        if openers:
            raise self._end_of_input(openers[-1])
        return Directive(name=name.text, tokens=tokens)


def _parse(data: bytes, file: str, path: str, env: Mapping[str, str] | None, base_dir: str) -> Corefile:
    sources = Sources(os.environ if env is None else env, file, base_dir)
    tokens = sources.add_main(path, data)
    stream = TokenStream(("file", os.path.realpath(path)), tokens)
    blocks = _Parser(stream, sources).blocks()
    return Corefile(blocks=blocks, files=sources.files, contents=sources.contents)


def parse(text: str, file: str = "Corefile", env: Mapping[str, str] | None = None,
          base_dir: str | None = None) -> Corefile:
    """Parse `text`, read from `file` (the name used in tokens and errors).

    Imports are resolved against `base_dir`, by default the directory of `file`. `env` supplies
    ``{$VAR}`` values (default: os.environ). The main file counts as ``base_dir/basename(file)``
    for `Corefile.files` and for spotting a Corefile that imports itself.
    """
    if base_dir is None:
        base_dir = os.path.dirname(os.path.abspath(file))
    path = os.path.join(base_dir, os.path.basename(file))
    return _parse(text.encode("utf-8"), file, path, env, base_dir)


def load(path: str, env: Mapping[str, str] | None = None) -> Corefile:
    """Read and parse the Corefile at `path`; imports are relative to its directory.

    An unreadable main file raises OSError (the caller reports it); everything after that,
    including unreadable imported files, raises CorefileError.
    """
    with open(path, "rb") as f:
        data = f.read()
    return _parse(data, path, path, env, os.path.dirname(os.path.abspath(path)))
