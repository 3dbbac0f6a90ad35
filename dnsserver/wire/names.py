"""Names in wire form: the one walker over a name's labels, and the one reader of a name as text.

Every module that skips a name (record walks, question checks) calls `name_end`; every one that
needs a name as text (the relay path, log's views) calls `name_text`.
"""

from __future__ import annotations

# The octets dnslib prints as themselves in a name (printable ASCII but space): Request.name's spelling.
_PLAIN = bytes(range(0x21, 0x7F))


def name_end(msg: bytes, i: int, compressed: bool = True) -> int:
    """Offset just past the name at `i`, or -1 if it runs past the end of `msg`.

    A compression pointer ends a name; with `compressed` False (a question name we key on) it makes
    the name unreadable (-1) instead, and so does any other label type.
    """
    n = len(msg)
    while i < n:
        length = msg[i]
        if length == 0:
            return i + 1
        if length & 0xC0:
            return i + 2 if compressed and length & 0xC0 == 0xC0 and i + 2 <= n else -1
        i += 1 + length
    return -1


def question_end(msg: bytes, offset: int = 12) -> int:
    """Offset just past the question at `offset` (name, type, class), or -1 if it does not parse.

    Compression pointers are not allowed in a question name we key on: a pointer gives -1, so the
    caller takes the slow path, which handles it properly.
    """
    end = name_end(msg, offset, compressed=False)
    return end + 4 if 0 <= end <= len(msg) - 4 else -1


def name_text(msg: bytes, i: int = 12, strict: bool = False) -> str | None:
    """The uncompressed name at `i` as text ("." for the root), as sent; None if it cannot be read.

    Octets dnslib would print escaped are written \\xNN-style; with `strict`, a name holding any
    such octet is None instead (the relay path leaves those to the parsed path, which escapes them
    as dnslib does).
    """
    labels: list[str] = []
    n = len(msg)
    while i < n:
        length = msg[i]
        if length == 0:
            return ".".join(labels) + "." if labels else "."
        if length & 0xC0 or i + 1 + length > n:
            return None
        label = msg[i + 1:i + 1 + length]
        if strict and label.translate(None, _PLAIN):
            return None
        labels.append(label.decode("ascii", "backslashreplace"))
        i += 1 + length
    return None
