"""Dispenser: walking the tokens of one directive the way plugin setup functions do."""

from __future__ import annotations

import pytest

from corefile import CorefileError, Dispenser, Token, parse


def dispenser(body: str, name: str, env: dict[str, str] | None = None) -> Dispenser:
    """A Dispenser over every occurrence of `name` in the single server block `. { body }`."""
    cf = parse(". {\n" + body + "\n}\n", "Corefile", env=env or {})
    tokens = [t for d in cf.blocks[0].directives if d.name == name for t in d.tokens]
    return Dispenser(name, tokens)


def walk(d: Dispenser) -> list[str]:
    """The generic plugin walk: every line of every (nested) block, indented by depth."""
    out: list[str] = []
    while d.next():
        out.append(" ".join([d.val(), *d.remaining_args()]))
        out.extend(_walk_block(d, 0))
    return out


def _walk_block(d: Dispenser, level: int) -> list[str]:
    out: list[str] = []
    while d.next_block(level):
        assert d.nesting == level + 1
        out.append("  " * (level + 1) + " ".join([d.val(), *d.remaining_args()]))
        out.extend(_walk_block(d, d.nesting))
    return out


# (name, server block body, directive, expected walk)
WALKS = [
    ("no arguments", "whoami", "whoami", ["whoami"]),
    ("arguments", "cache 30 example.org", "cache", ["cache 30 example.org"]),
    ("block", "health {\n   lameduck 5s\n}", "health", ["health", "  lameduck 5s"]),
    ("one-line block", "health { lameduck 5s }", "health", ["health", "  lameduck 5s"]),
    ("empty block", "health {\n}", "health", ["health"]),
    ("empty one-line block", "health { }", "health", ["health"]),
    ("kubernetes", "kubernetes cluster.local in-addr.arpa ip6.arpa {\n pods insecure\n"
     " fallthrough in-addr.arpa ip6.arpa\n ttl 30\n}", "kubernetes",
     ["kubernetes cluster.local in-addr.arpa ip6.arpa", "  pods insecure",
      "  fallthrough in-addr.arpa ip6.arpa", "  ttl 30"]),
    ("nested", "forward . 1.2.3.4 {\n tls {\n  a b\n  c\n }\n policy x\n}", "forward",
     ["forward . 1.2.3.4", "  tls", "    a b", "    c", "  policy x"]),
    ("nested on one line", "forward . 1.2.3.4 { tls { a b } policy x }", "forward",
     ["forward . 1.2.3.4", "  tls", "    a b", "  policy x"]),
    ("nested with arguments before the block", "forward . 1.2.3.4 {\n tls cert key {\n  a\n }\n}", "forward",
     ["forward . 1.2.3.4", "  tls cert key", "    a"]),
    ("three levels", "x {\n a {\n  b {\n   c d\n  }\n  e\n }\n f\n}", "x",
     ["x", "  a", "    b", "      c d", "    e", "  f"]),
    ("empty nested block", "x {\n a {\n }\n b\n}", "x", ["x", "  a", "  b"]),
    ("rewrite block", "rewrite stop {\n name regex (.*)\\.a {1}.b\n answer name (.*)\\.b {1}.a\n}", "rewrite",
     ["rewrite stop", "  name regex (.*)\\.a {1}.b", "  answer name (.*)\\.b {1}.a"]),
    ("several occurrences", "log\nwhoami\nlog stdout {\n class denial\n}\nlog x", "log",
     ["log", "log stdout", "  class denial", "log x"]),
    ("quoted brace is an argument", 'template "{" x {\n answer "}"\n}', "template",
     ["template { x", "  answer }"]),
    ("multi-line quoted argument", 'chaos "a\nb" c {\n x\n}', "chaos", ["chaos a\nb c", "  x"]),
]


@pytest.mark.parametrize(("name", "body", "directive", "want"), WALKS, ids=[w[0] for w in WALKS])
def test_walk(name, body, directive, want):
    d = dispenser(body, directive)
    assert walk(d) == want
    assert not d.next()


def test_next_block_skips_unread_arguments():
    d = dispenser("forward . 1.2.3.4 {\n  policy random extra\n  max_fails 3\n}", "forward")
    assert d.next()
    seen = []
    while d.next_block():  # never reads arguments, neither of the directive nor of the properties
        seen.append((d.val(), d.line()))
    assert seen == [("policy", 3), ("max_fails", 4)]
    assert d.val() == "}"
    assert not d.next()


def test_next_block_without_block_does_not_move():
    d = dispenser("cache 30\nlog", "cache")
    assert d.next()
    assert d.next_arg()
    assert d.val() == "30"
    assert not d.next_block()
    assert d.val() == "30"


def test_next_block_before_the_first_token():
    d = dispenser("health {\n lameduck 5s\n}", "health")
    assert not d.next_block()
    assert d.val() == ""


def test_next_block_empty_block_consumes_both_braces():
    d = dispenser("health {\n}\nhealth", "health")
    assert d.next()
    assert not d.next_block()
    assert d.val() == "}"
    assert d.next()
    assert d.val() == "health"
    assert d.line() == 4


def test_next_block_nesting_levels():
    d = dispenser("forward . x {\n tls {\n  a\n }\n}", "forward")
    assert d.next()
    assert d.nesting == 0
    assert not d.next_block(1)  # level must be the depth of the opening line
    assert d.next_block()
    assert d.val() == "tls"
    assert d.nesting == 1
    level = d.nesting
    assert d.next_block(level)
    assert d.val() == "a"
    assert d.nesting == 2
    assert not d.next_block(level)
    assert d.val() == "}"
    assert d.nesting == 1
    assert not d.next_block()
    assert d.val() == "}"
    assert d.nesting == 0


def test_leaving_a_nested_block_early():
    d = dispenser("x {\n a {\n  b\n  c\n }\n d\n}", "x")
    assert d.next()
    assert d.next_block()
    assert d.next_block(1)
    assert d.val() == "b"
    # The caller stops walking `a`'s block after `b`: the outer walk skips the rest of it.
    assert d.next_block()
    assert d.val() == "d"
    assert not d.next_block()


# (name, body, directive, expected error prefix, fragment); the walk reads properties but never
# steps into nested blocks, so a nested block is a user error reported at its `{`.
UNWALKED = [
    ("nested block", "health {\n lameduck 5s {\n  x\n }\n}", "health", "Corefile:3 - ",
     "plugin/health: unexpected '{' after 'lameduck'"),
    ("nested block on one line", "health { lameduck 5s { x } }", "health", "Corefile:2 - ",
     "plugin/health: unexpected '{' after 'lameduck'"),
    ("second property", "forward . x {\n max_fails 3\n\n\n tls {\n }\n}", "forward", "Corefile:6 - ",
     "plugin/forward: unexpected '{' after 'tls'"),
]


@pytest.mark.parametrize(("name", "body", "directive", "prefix", "fragment"), UNWALKED,
                         ids=[u[0] for u in UNWALKED])
def test_unwalked_nested_block(name, body, directive, prefix, fragment):
    d = dispenser(body, directive)
    assert d.next()
    d.remaining_args()

    def walk_block() -> None:
        while d.next_block():
            d.remaining_args()

    with pytest.raises(CorefileError) as e:
        walk_block()
    assert str(e.value).startswith(prefix)
    assert fragment in str(e.value)


def test_next_and_val():
    d = dispenser("log a\nlog b", "log")
    assert d.val() == ""
    got = []
    while d.next():
        got.append((d.val(), d.line(), d.file()))
    assert got == [("log", 2, "Corefile"), ("a", 2, "Corefile"), ("log", 3, "Corefile"), ("b", 3, "Corefile")]
    assert not d.next()
    assert d.val() == "b"


def test_next_arg():
    d = dispenser("forward . a b {\n x\n}\nforward", "forward")
    assert d.next_arg()
    assert d.val() == "forward"
    assert d.next_arg()
    assert d.val() == "."
    assert d.next_arg()
    assert d.next_arg()
    assert d.val() == "b"
    assert not d.next_arg()
    assert d.val() == "b"
    assert d.next()
    assert d.val() == "{"
    assert d.next()
    assert d.val() == "x"
    assert not d.next_arg()  # end of line
    assert d.next()
    assert d.val() == "}"
    assert not d.next_arg()
    assert d.next()
    assert d.val() == "forward"
    assert not d.next_arg()


def test_next_arg_stops_before_closing_brace():
    d = dispenser("health { lameduck 5s }", "health")
    assert d.next()
    assert d.next_block()
    assert d.remaining_args() == ["5s"]
    assert not d.next_arg()
    assert not d.next_block()
    assert d.val() == "}"


def test_next_arg_after_multi_line_quoted_token():
    d = dispenser('chaos "a\nb" c\nchaos', "chaos")
    assert d.next()
    assert d.next_arg()
    assert d.val() == "a\nb"
    assert d.next_arg()
    assert d.val() == "c"
    assert d.line() == 3
    assert not d.next_arg()


def test_next_line():
    d = dispenser("log a b\nlog c {\n x\n}", "log")
    assert d.next_line()
    assert d.val() == "log"
    assert not d.next_line()
    assert d.val() == "log"
    assert d.next_arg()
    assert d.next_arg()
    assert d.val() == "b"
    assert d.next_line()
    assert d.val() == "log"
    assert d.line() == 3
    assert d.args(1) == ["c"]
    assert not d.next_line()
    assert d.next()
    assert d.next_line()
    assert d.val() == "x"
    assert d.next_line()
    assert d.val() == "}"
    assert not d.next_line()


def test_args():
    d = dispenser("tls cert key ca {\n x\n}", "tls")
    assert d.next()
    assert d.args(4) is None
    assert d.val() == "tls"
    assert d.args(2) == ["cert", "key"]
    assert d.val() == "key"
    assert d.args(0) == []
    assert d.args(1) == ["ca"]
    assert d.args(1) is None
    assert d.val() == "ca"


def test_remaining_args():
    d = dispenser("forward . a b {\n max_fails 3\n}", "forward")
    assert d.next()
    assert d.remaining_args() == [".", "a", "b"]
    assert d.remaining_args() == []
    assert d.next_block()
    assert d.remaining_args() == ["3"]


# (name, body, directive, expected number of occurrences)
OCCURRENCES = [
    ("one", "log", "log", 1),
    ("one with arguments and a block", "log a b {\n class all\n x {\n  y\n }\n}", "log", 1),
    ("three", "log\nerrors\nlog stdout {\n class denial\n}\nlog x", "log", 3),
    ("one-line blocks", "log { a }\nlog { b }", "log", 2),
    ("none", "errors", "log", 0),
]


@pytest.mark.parametrize(("name", "body", "directive", "want"), OCCURRENCES, ids=[o[0] for o in OCCURRENCES])
def test_occurrences(name, body, directive, want):
    assert dispenser(body, directive).occurrences() == want


def test_pasted_occurrences_stay_apart():
    # The same one-line snippet pasted twice: both `log` tokens have file "Corefile" and line 2.
    cf = parse("(s) {\n log\n}\n. {\n import s\n import s\n}\n", "Corefile", env={})
    tokens = [t for d in cf.blocks[0].directives for t in d.tokens]
    assert [(t.text, t.line) for t in tokens] == [("log", 2), ("log", 2)]
    d = Dispenser("log", tokens)
    assert d.occurrences() == 2
    assert d.next()
    assert d.remaining_args() == []
    assert d.next()
    assert d.remaining_args() == []


def test_errors():
    body = "errors\n\n\n\nforward . 1.2.3.4 {\n  policy\n  bogus 1\n  tls\n}"
    d = dispenser(body, "forward")
    assert d.next()
    assert d.next_block()
    assert d.next_block()
    assert d.val() == "bogus"
    assert d.line() == 8
    cases = [
        (d.err("something odd"), "something odd"),
        (d.arg_err(), "Wrong argument count or unexpected line ending after 'bogus'"),
        (d.syntax_err("}"), "Syntax error: Unexpected token 'bogus', expecting '}'"),
        (d.unknown_property(), "unknown property 'bogus'"),
    ]
    for err, want in cases:
        assert isinstance(err, CorefileError)
        assert str(err) == "Corefile:8 - plugin/forward: " + want
        assert (err.file, err.line, err.message) == ("Corefile", 8, "plugin/forward: " + want)
    assert d.next_block()
    assert str(d.arg_err()).startswith("Corefile:9 - ")


def test_unknown_property_names_the_property_after_its_arguments_are_read():
    # A setup that reads a line's arguments before deciding the line is unknown must still name the
    # property (it named the last argument: `frobnicate cluster.local` gave 'cluster.local').
    d = dispenser("kubernetes cluster.local {\n  pods insecure\n  frobnicate cluster.local\n}", "kubernetes")
    assert d.next()
    assert d.remaining_args() == ["cluster.local"]
    assert d.next_block()
    assert d.next_block()
    assert d.remaining_args() == ["cluster.local"]
    assert d.val() == "cluster.local"
    assert str(d.unknown_property()) == "Corefile:4 - plugin/kubernetes: unknown property 'frobnicate'"


def test_errors_before_the_first_token():
    d = Dispenser("log", [Token("log", "conf/Corefile", 5)])
    assert str(d.err("x")) == "conf/Corefile:5 - plugin/log: x"
    assert str(Dispenser("log", []).err("x")) == ":0 - plugin/log: x"
    assert Dispenser("log", []).val() == ""


def test_errors_in_imported_files(tmp_path):
    (tmp_path / "fw.conf").write_text("\nforward . 1.1.1.1 {\n  bogus\n}\n")
    cf = parse(". {\n import fw.conf\n}\n", "Corefile", env={}, base_dir=str(tmp_path))
    d = Dispenser("forward", cf.blocks[0].directives[0].tokens)
    assert d.next()
    assert d.next_block()
    assert str(d.unknown_property()) == f"{tmp_path}/fw.conf:3 - plugin/forward: unknown property 'bogus'"


def test_block_lines_from_a_snippet():
    text = ("(opts) {\n  max_fails 3\n  expire 10s\n}\n"
            ". {\n  forward . 1.1.1.1 {\n    import opts\n    policy x\n  }\n}\n")
    cf = parse(text, "Corefile", env={})
    d = Dispenser("forward", cf.blocks[0].directives[0].tokens)
    assert walk(d) == ["forward . 1.1.1.1", "  max_fails 3", "  expire 10s", "  policy x"]
    d = Dispenser("forward", cf.blocks[0].directives[0].tokens)
    assert d.next()
    assert d.next_block()
    assert d.remaining_args() == ["3"]
    assert d.line() == 2  # pasted tokens keep the snippet's position
