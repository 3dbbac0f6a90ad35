"""Every plugin's module docstring is its manual; every ```corefile example in it must load."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from corefile import parse
from dnsplugins import PLUGINS
from dnsserver.config import build

EXAMPLE = re.compile(r"```corefile\n(.*?)```", re.S)
# Files the examples name (cert.pem, zone files, ...) live here; relative paths resolve against it.
DOCS_DIR = Path(__file__).parent / "data" / "docs"


@pytest.mark.parametrize("spec", PLUGINS, ids=lambda s: s.name)
def test_docstring_has_syntax_and_examples_that_build(spec) -> None:
    doc = spec.module.__doc__ or ""
    assert doc.startswith(f"{spec.name}:"), f"{spec.name}: docstring must start with the plugin's name"
    assert "## Syntax" in doc
    assert "## Examples" in doc
    examples = EXAMPLE.findall(doc)
    assert examples, f"{spec.name}: no ```corefile example"
    for text in examples:
        cfg = build(parse(text, str(DOCS_DIR / "Corefile"), base_dir=str(DOCS_DIR)), 53)
        assert any(spec.name in b.names for b in cfg.blocks), f"{spec.name}: example does not use the plugin"
