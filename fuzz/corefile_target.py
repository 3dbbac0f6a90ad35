"""The Corefile: lexer, parser, imports, ``{$ENV}`` substitution and every plugin's setup
(``dnsserver.config.build``), on text taken from the input bytes.

Invariant: the result is a Config, or a CorefileError whose line is at least 1 and, when it names
the main Corefile, at most one past its last line. Any other exception is a failure (a setup that
crashes on odd arguments instead of saying which line is wrong).

The Corefile lives in a scratch directory holding what the plugins' documented examples name
(tests/data/docs: a certificate, its key, cluster manifests), a hosts file, a zone file and two
snippets for ``import``; relative paths resolve there.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from corefile import CorefileError, parse
from dnsserver.config import build
from fuzz import Failure

DOCS = Path(__file__).resolve().parents[1] / "tests" / "data" / "docs"

ENV = {"ZONE": "example.org", "PORT": "1053", "EMPTY": "", "UPSTREAM": "127.0.0.1:5300"}

FILES = {
    "hosts": "10.0.0.1 app.example.org\nfd00::1 app.example.org\n",
    "db.example.org": ("$ORIGIN example.org.\n@ 3600 IN SOA ns admin 1 7200 3600 1209600 300\n"
                       "@ IN NS ns\nns IN A 10.0.0.53\nwww IN A 10.0.0.80\n"),
    "snippet": "errors\nlog\n",
    "block.conf": "example.net {\n whoami\n}\n",
}

_scratch: str | None = None


def scratch() -> str:
    """The scratch directory, made once per process."""
    global _scratch
    if _scratch is None:
        _scratch = tempfile.mkdtemp(prefix="portolan-fuzz-corefile-")
        # Setups warn about missing files they will wait for; a run logs nothing but failures.
        logging.getLogger().setLevel(logging.CRITICAL)
        for f in DOCS.iterdir():
            shutil.copy(f, _scratch)
        for name, text in FILES.items():
            Path(_scratch, name).write_text(text)
    return _scratch


def check(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    base = scratch()
    try:
        build(parse(text, os.path.join(base, "Corefile"), env=ENV, base_dir=base), 53)
    except CorefileError as e:
        if e.line < 1:
            raise Failure(f"error without a line: {e}") from e
        if os.path.basename(e.file) == "Corefile" and e.line > text.count("\n") + 2:
            raise Failure(f"error past the end ({text.count(chr(10)) + 1} lines): {e}") from e
