"""Manifest files into the manifests source (kubewatch/manifests.py), as ``portolan dns`` and
``portolan ingress --manifests`` read them: the input is written as the one file of a scratch
directory, ``.json`` when its first byte is ``{`` and ``.yaml`` otherwise, and loaded into a fresh
store.

Invariant: ``load`` returns; True with no errors and the store holding objects of known kinds,
or False with at least one ManifestError, each naming the file. No exception escapes the source.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from fuzz import Failure
from kubewatch import Store
from kubewatch.manifests import ManifestSource

_scratch: Path | None = None


def scratch() -> Path:
    global _scratch
    if _scratch is None:
        _scratch = Path(tempfile.mkdtemp(prefix="portolan-fuzz-manifests-"))
        # Every broken file is logged at ERROR by design; a run logs nothing but failures.
        logging.getLogger().setLevel(logging.CRITICAL)
    return _scratch


def check(data: bytes) -> None:
    d = scratch()
    for old in d.iterdir():
        old.unlink()
    f = d / ("in.json" if data[:1] == b"{" else "in.yaml")
    f.write_bytes(data)
    source = ManifestSource(Store(), d)
    ok = source.load()
    if ok and source.errors:
        raise Failure(f"loaded, yet errors: {source.errors}")
    if not ok:
        if not source.errors:
            raise Failure("refused without an error")
        for err in source.errors:
            if err.path != str(f):
                raise Failure(f"an error naming {err.path}, not {f}: {err}")
