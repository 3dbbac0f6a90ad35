"""``python -m fuzz TARGET SECONDS`` runs one target under atheris; ``--list`` names them.

libFuzzer reads the seeds in fuzz/corpus/TARGET and writes what it finds to a work directory
outside the repository (``$PORTOLAN_FUZZ_DIR/TARGET``, default /tmp/portolan-fuzz/TARGET: ``corpus/`` for
new inputs, ``crashes/`` for crashing ones), so a run never dirties the tree; a crash worth keeping
is copied into the seed corpus by hand, with its regression test.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fuzz import CORPUS, TARGETS

DICTS = Path(__file__).resolve().parent / "dict"

# The code under test: only these are instrumented (coverage of dnslib, yaml or jinja2 would
# steer the fuzzer into their internals rather than ours).
PACKAGES = ["corefile", "dnsserver", "dnsplugins", "kubewatch", "ingress", "fuzz"]


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--list"]:
        print("\n".join(TARGETS))
        return 0
    if len(argv) < 3 or argv[1] not in TARGETS:
        print(f"usage: {argv[0]} TARGET SECONDS [libFuzzer flags...] | --list", file=sys.stderr)
        return 2
    name, seconds = argv[1], int(argv[2])
    import atheris  # only the runner needs it: the suite replays the targets without it

    work = Path(os.environ.get("PORTOLAN_FUZZ_DIR", "/tmp/portolan-fuzz")) / name
    (work / "corpus").mkdir(parents=True, exist_ok=True)
    (work / "crashes").mkdir(parents=True, exist_ok=True)
    with atheris.instrument_imports(include=PACKAGES):
        from fuzz import entry

        check = entry(name)
        # Importing the target loads what its first input needs; touch it now so that the time
        # limit is spent fuzzing, and instrumented code paths are all loaded before the first input.
        for seed in sorted((CORPUS / name).iterdir()):
            check(seed.read_bytes())
    args = [argv[0], str(work / "corpus"), str(CORPUS / name), f"-max_total_time={seconds}",
            f"-artifact_prefix={work / 'crashes'}/", "-rss_limit_mb=3072", "-timeout=20", *argv[3:]]
    dictionary = DICTS / f"{name}.dict"  # words a target's format is made of, which mutations rarely guess
    if dictionary.exists():
        args.append(f"-dict={dictionary}")
    atheris.Setup(args, check)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
