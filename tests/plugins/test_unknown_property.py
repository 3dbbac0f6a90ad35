"""Every plugin whose syntax has a `{ }` block names an unknown line in it as CoreDNS does:
`FILE:LINE - plugin/NAME: unknown property 'frobnicate'`, whatever the line's arguments are."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from corefile import CorefileError, parse
from dnsplugins import PLUGINS, PluginSpec
from dnsserver.config import build

DOCS_DIR = Path(__file__).resolve().parent.parent / "data" / "docs"
CODE = re.compile(r"```\n(.*?)```", re.S)

# The directive's own line where the plugin needs arguments before its block, and lines the block
# needs before the unknown one (hosts takes a line it does not know for an inline entry until a
# `fallthrough`, as CoreDNS does).
DIRECTIVE = {
    "bind": "bind 127.0.0.1",
    "file": "file db.example.org",
    "forward": "forward . 127.0.0.1",
    "tls": "tls cert.pem key.pem",
    "template": "template IN A",
    "view": "view v1",
}
BEFORE = {"hosts": "fallthrough"}
# CoreDNS's own wording where it differs: header's lines are selectors, rewrite's block is one
# rule's words spread over lines, timeouts calls its lines options, and acl's lines are actions.
MESSAGE = {
    "template": "Wrong argument count or unexpected line ending after 'frobnicate'",  # CoreDNS's c.ArgErr()
    "acl": "unexpected token \"frobnicate\"; expect 'allow', 'block', 'filter' or 'drop'",
    "header": "setting up rule: invalid selector=frobnicate should be query or response",
    "rewrite": 'invalid rule type "frobnicate"',
    "timeouts": "unknown option: 'frobnicate'",
}


def has_block(spec: PluginSpec) -> bool:
    """Whether the plugin's manual shows a `{ }` block in its syntax."""
    doc = spec.module.__doc__ or ""
    syntax = doc.split("## Syntax", 1)[1].split("\n## ", 1)[0]
    return any("{" in code for code in CODE.findall(syntax))


BLOCK_PLUGINS = [s for s in PLUGINS if has_block(s)]


def test_the_table_is_not_empty() -> None:
    assert {"kubernetes", "forward", "cache", "hosts"} <= {s.name for s in BLOCK_PLUGINS}


@pytest.mark.parametrize("spec", BLOCK_PLUGINS, ids=lambda s: s.name)
def test_unknown_property_is_named(spec: PluginSpec) -> None:
    before = f"        {BEFORE[spec.name]}\n" if spec.name in BEFORE else ""
    text = f". {{\n    {DIRECTIVE.get(spec.name, spec.name)} {{\n{before}        frobnicate cluster.local\n    }}\n}}\n"
    line = 4 if before else 3
    with pytest.raises(CorefileError) as e:
        build(parse(text, str(DOCS_DIR / "Corefile"), base_dir=str(DOCS_DIR)), 53)
    want = MESSAGE.get(spec.name, "unknown property 'frobnicate'")
    assert str(e.value) == f"{DOCS_DIR / 'Corefile'}:{line} - plugin/{spec.name}: {want}"
