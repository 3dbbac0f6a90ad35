"""User regular expressions that Python's re refuses with something other than re.error: a
repetition count over its limit (OverflowError) and nesting deeper than its parser recurses
(RecursionError). Each is a line-numbered CorefileError like any bad pattern, and an Ingress regex
path (bounded before it is compiled) an invalid value (fuzz/corpus/corefile/crash-regex-repeat:
the template plugin's setup raised OverflowError)."""

from __future__ import annotations

import pytest

from corefile import CorefileError, parse
from dnsserver.config import build
from ingress.validate import InvalidValue, regex

HUGE = "a{99999999999999999}"
DEEP = "(" * 600 + "a" + ")" * 600


@pytest.mark.parametrize("pattern", [HUGE, DEEP], ids=["huge-repeat", "deep-nesting"])
@pytest.mark.parametrize("corefile", [
    '. {{\n template IN A example {{\n  match "{p}"\n  answer "{{{{ .Name }}}} 60 IN A 10.0.0.1"\n }}\n}}',
    ". {{\n rewrite name regex {p} x.example.\n whoami\n}}",
    '. {{\n errors {{\n  consolidate 5m "{p}"\n }}\n whoami\n}}',
    ". {{\n view v {{\n  expr name() matches '{p}'\n }}\n whoami\n}}",
], ids=["template", "rewrite", "errors", "view"])
def test_refused_with_a_line(corefile: str, pattern: str) -> None:
    with pytest.raises(CorefileError) as e:
        build(parse(corefile.format(p=pattern), "Corefile"), 53)
    assert e.value.line in (2, 3), e.value


@pytest.mark.parametrize("pattern", [HUGE, DEEP], ids=["huge-repeat", "deep-nesting"])
def test_an_ingress_regex_path_is_an_invalid_value(pattern: str) -> None:
    with pytest.raises(InvalidValue):
        regex("/" + pattern, "spec.rules[0].http.paths[0].path")
