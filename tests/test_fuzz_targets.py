"""The fuzz targets (fuzz/) without atheris: every seed of every target's corpus (crashes found
by earlier runs among them, named crash-*) meets the target's invariant, and so do inputs
hypothesis makes from the seeds (bytes flipped, cut, spliced) and from nothing. A failure here is
a regression of a fixed crash or a new one; `scripts/fuzz TARGET SECONDS` searches further."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import TARGETS, entry, ingress_target, seeds

ingress_target.NGINX_CHECKS = False  # no process here: the smoke run in scripts/test keeps nginx -t


@pytest.fixture(autouse=True, scope="module")
def _logging_restored() -> Iterator[None]:
    """The targets quiet logging for their runs (the root logger at CRITICAL, a handler or two): the
    tests run after these get back the levels and handlers they had (caplog saw nothing otherwise)."""
    def loggers() -> list[logging.Logger]:
        return [logging.getLogger(), *(lg for lg in logging.root.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger))]

    saved = {lg: (lg.level, list(lg.handlers)) for lg in loggers()}
    yield
    for lg in loggers():
        level, handlers = saved.get(lg, (logging.NOTSET, None))  # a logger made since: as made
        lg.setLevel(level)
        lg.handlers[:] = handlers if handlers is not None else [
            h for h in lg.handlers if not type(h).__module__.startswith("fuzz.")]


def _cases() -> list[tuple[str, Path]]:
    return [(name, path) for name in TARGETS for path in seeds(name)]


@pytest.mark.parametrize(("target", "seed"), _cases(), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_seed_meets_the_invariant(target: str, seed: Path) -> None:
    entry(target)(seed.read_bytes())


def _flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for at, value in flips:
        if at < len(out):
            out[at] = value
    return bytes(out)


def _mutations(name: str) -> st.SearchStrategy[bytes]:
    corpus = [p.read_bytes() for p in seeds(name)]
    seed = st.sampled_from(corpus)
    flipped = st.tuples(seed, st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=8)).map(
        lambda t: _flip(*t))
    cut = st.tuples(seed, st.integers(0, 4095)).map(lambda t: t[0][: t[1]])
    spliced = st.tuples(seed, seed, st.integers(0, 4095)).map(lambda t: t[0][: t[2]] + t[1][t[2]:])
    inserted = st.tuples(seed, st.integers(0, 4095), st.binary(max_size=16)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1]:])
    return st.one_of(flipped, cut, spliced, inserted, st.binary(max_size=300))


# Per target: how many inputs (the fast ones get more; the ingress target renders nginx.conf).
EXAMPLES = {"dns": 1500, "corefile": 1000, "zonefile": 1000, "hosts": 500, "ingress": 200, "manifests": 300,
            "admission": 500}


@pytest.mark.parametrize("target", list(TARGETS))
def test_generated_inputs_meet_the_invariant(target: str) -> None:
    check = entry(target)

    @settings(max_examples=EXAMPLES[target], deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=_mutations(target))
    def run(data: bytes) -> None:
        check(data)

    run()


def test_the_ingress_dictionary_names_every_supported_annotation() -> None:
    from ingress.annotations import SUPPORTED

    words = (Path(__file__).resolve().parents[1] / "fuzz" / "dict" / "ingress.dict").read_text()
    assert [name for name in sorted(SUPPORTED) if f'"\\x0a{name}="' not in words] == []


def test_the_corefile_dictionary_names_every_plugin() -> None:
    from dnsplugins import PLUGINS

    words = (Path(__file__).resolve().parents[1] / "fuzz" / "dict" / "corefile.dict").read_text()
    assert [spec.name for spec in PLUGINS if f'"\\x0a    {spec.name} "' not in words] == []
