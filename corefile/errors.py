"""The one exception type of the Corefile package.

Every problem found while reading a Corefile is reported as FILE:LINE plus a message, because
that is what an operator needs to find the mistake (and what CoreDNS prints).
"""

from __future__ import annotations


class CorefileError(Exception):
    """A Corefile problem at a known place; `str(e)` is "FILE:LINE - MESSAGE"."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line} - {message}")
        self.file = file
        self.line = line
        self.message = message

    def __reduce__(self) -> tuple[type[CorefileError], tuple[str, int, str]]:
        # Exception pickles with self.args (the formatted string), which __init__ cannot take back.
        return (type(self), (self.file, self.line, self.message))
