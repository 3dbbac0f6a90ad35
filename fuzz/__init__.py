"""Coverage-guided fuzz targets (atheris) for every input the two servers read.

Each target is a module here with one entry, ``check(data: bytes) -> None``, that feeds the bytes to
the real code and raises ``Failure`` (or lets any other exception out) when the target's invariant
does not hold; the invariant is in the module's docstring. The entries need no atheris, so the test
suite runs them over the seed corpus (fuzz/corpus/<target>/) and over hypothesis-made inputs
(tests/test_fuzz_targets.py); ``scripts/fuzz TARGET SECONDS`` (``python -m fuzz``) runs one under
atheris, with libFuzzer's new inputs and crashes kept outside the repository.

A crash found by a run becomes a file in the target's seed corpus (named ``crash-<what>``) and a
fix, so the suite replays it forever after.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"

# target name -> module under fuzz/ (the order `--list` prints, DNS and Corefile first)
TARGETS: dict[str, str] = {
    "dns": "fuzz.dns_target",
    "corefile": "fuzz.corefile_target",
    "zonefile": "fuzz.zonefile_target",
    "hosts": "fuzz.hosts_target",
    "ingress": "fuzz.ingress_target",
    "manifests": "fuzz.manifests_target",
    "admission": "fuzz.admission_target",
}


class Failure(AssertionError):
    """An invariant of a target did not hold for an input."""


def entry(name: str) -> Callable[[bytes], None]:
    """The check function of target ``name`` (its module imported now, so that atheris's import
    hook, when installed, instruments the code it reaches)."""
    module = importlib.import_module(TARGETS[name])
    check: Callable[[bytes], None] = module.check
    return check


def seeds(name: str) -> list[Path]:
    """The seed corpus files of target ``name``, sorted."""
    return sorted(p for p in (CORPUS / name).iterdir() if p.is_file())
