"""Zone files (dnsplugins/file): the master-file lexer, the record parser and the Zone built from
what they read, for zone example.org. in a scratch directory (an ``$INCLUDE`` finds ``inc.db``).

Invariant: either a ZoneFileError whose line is within the file (1 to one past its last line),
or a zone: ``Zone(parsed)`` builds, and every record packs to wire (what the file plugin serves)
and carries a line of the file it came from. Nothing else may be raised.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from dnslib import DNSBuffer

from dnsplugins.file.lexer import ZoneFileError
from dnsplugins.file.zone import Zone
from dnsplugins.file.zonefile import parse_text
from fuzz import Failure

INCLUDED = "extra 300 IN TXT \"from inc.db\"\n"

_scratch: str | None = None


def scratch() -> str:
    global _scratch
    if _scratch is None:
        _scratch = tempfile.mkdtemp(prefix="portolan-fuzz-zone-")
        Path(_scratch, "inc.db").write_text(INCLUDED)
    return _scratch


def check(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    lines = text.count("\n") + 1
    path = str(Path(scratch(), "db.fuzz"))
    try:
        parsed = parse_text(text, "db.fuzz", "example.org.", path)
    except ZoneFileError as e:
        limit = lines if e.file == "db.fuzz" else INCLUDED.count("\n") + 1
        if not 1 <= e.line <= limit + 1:
            raise Failure(f"error line {e.line} outside {e.file} ({limit} lines): {e}") from e
        return
    Zone(parsed)
    for rec in parsed.records:
        limit = lines if rec.file == "db.fuzz" else INCLUDED.count("\n") + 1
        if not 1 <= rec.line <= limit:
            raise Failure(f"record {rec.rr} at line {rec.line} outside {rec.file}")
        rec.rr.pack(DNSBuffer())
