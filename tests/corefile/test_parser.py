"""Parser: server blocks, directives, snippets, import and environment substitution."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

import corefile.imports
from corefile import Corefile, CorefileError, Dispenser, load, parse

KUBEADM = """\
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"""

Shape = list[tuple[list[str], list[list[str]]]]


def shape(cf: Corefile) -> Shape:
    """Each block as (keys, [tokens of each directive])."""
    return [([k.text for k in b.keys], [[t.text for t in d.tokens] for d in b.directives]) for b in cf.blocks]


ENV = {"ZONE": "example.org", "PORT": "1053", "DIR": "whoami", "SPACE": "a b"}

# (name, Corefile, expected shape); parsed with env=ENV
CASES: list[tuple[str, str, Shape]] = [
    ("empty", "", []),
    ("comments only", "# nothing\n  # here\n", []),
    ("one block", ". {\n    whoami\n}", [(["."], [["whoami"]])]),
    ("keys separated by spaces", "a.org b.org:53 {\n}", [(["a.org", "b.org:53"], [])]),
    ("keys separated by commas", "a.org, b.org,c.org {\n}", [(["a.org", "b.org", "c.org"], [])]),
    ("comma standing alone", "a.org , b.org ,c.org {\n}", [(["a.org", "b.org", "c.org"], [])]),
    ("trailing comma continues", "a.org,\n  b.org,\n\n  c.org {\n whoami\n}",
     [(["a.org", "b.org", "c.org"], [["whoami"]])]),
    ("brace on the next line", "example.org\n{\n  whoami\n}", [(["example.org"], [["whoami"]])]),
    ("no braces: rest of the file is the block", "example.org:1053\nwhoami\nlog stdout\n",
     [(["example.org:1053"], [["whoami"], ["log", "stdout"]])]),
    ("no braces with a nested block", "example.org\nforward . 1.1.1.1 {\n  max_fails 3\n}\nlog",
     [(["example.org"], [["forward", ".", "1.1.1.1", "{", "max_fails", "3", "}"], ["log"]])]),
    ("keys only", "example.org", [(["example.org"], [])]),
    ("empty block", "example.org {\n}", [(["example.org"], [])]),
    ("one line", ". { whoami }", [(["."], [["whoami"]])]),
    ("one line with arguments", ". { log stdout }", [(["."], [["log", "stdout"]])]),
    ("several blocks", "a.org {\n whoami\n}\nb.org:1053 {\n log\n errors\n}\n",
     [(["a.org"], [["whoami"]]), (["b.org:1053"], [["log"], ["errors"]])]),
    ("block after a closing brace on the same line", "a { whoami } b { log }",
     [(["a"], [["whoami"]]), (["b"], [["log"]])]),
    ("directive arguments", ". {\n cache 30 example.org\n}", [(["."], [["cache", "30", "example.org"]])]),
    ("directive case kept", ". {\n Log\n}", [(["."], [["Log"]])]),
    ("duplicate directives kept apart", ". {\n log\n log stdout\n}", [(["."], [["log"], ["log", "stdout"]])]),
    ("nested blocks", ". {\n forward . 1.2.3.4 {\n  tls {\n   a b\n  }\n  policy x\n }\n}",
     [(["."], [["forward", ".", "1.2.3.4", "{", "tls", "{", "a", "b", "}", "policy", "x", "}"]])]),
    ("nested blocks on one line", ". {\n forward . 1.2.3.4 { tls { a b } policy x }\n whoami\n}",
     [(["."], [["forward", ".", "1.2.3.4", "{", "tls", "{", "a", "b", "}", "policy", "x", "}"],
               ["whoami"]])]),
    ("placeholders are not braces", ". {\n rewrite name regex (.*)\\.a {1}.b\n}",
     [(["."], [["rewrite", "name", "regex", "(.*)\\.a", "{1}.b"]])]),
    ("quoted brace is an argument", '. {\n template "{" x\n}', [(["."], [["template", "{", "x"]])]),
    ("quoted multi-line argument", '. {\n chaos "a\nb" c\n whoami\n}', [(["."], [["chaos", "a\nb", "c"],
                                                                              ["whoami"]])]),
    ("import not first on its line is a word", ". {\n log import x\n}", [(["."], [["log", "import", "x"]])]),
    ("env in keys", "{$ZONE}:{%PORT%} {\n}", [(["example.org:1053"], [])]),
    ("env in directive names and arguments", ". {\n {$DIR}\n log {$ZONE}.{%PORT%}\n}",
     [(["."], [["whoami"], ["log", "example.org.1053"]])]),
    ("unset env is empty", ". {\n log x{$NOPE}y {%NOPE%}\n}", [(["."], [["log", "xy", ""]])]),
    ("env value stays one token", ". {\n chaos {$SPACE}\n}", [(["."], [["chaos", "a b"]])]),
    ("snippet at directive level", "(common) {\n errors\n log\n}\n. {\n import common\n whoami\n}",
     [(["."], [["errors"], ["log"], ["whoami"]])]),
    ("snippet at key level", "(site) {\n a.org {\n  whoami\n }\n}\nimport site\nb.org {\n}",
     [(["a.org"], [["whoami"]]), (["b.org"], [])]),
    ("snippet inside a directive block", "(opts) {\n max_fails 3\n}\n. {\n forward . 1.1.1.1 {\n"
     "  import opts\n  expire 10s\n }\n}",
     [(["."], [["forward", ".", "1.1.1.1", "{", "max_fails", "3", "expire", "10s", "}"]])]),
    ("snippet with a nested block", "(fw) {\n forward . 1.1.1.1 {\n  max_fails 3\n }\n}\n. {\n import fw\n}",
     [(["."], [["forward", ".", "1.1.1.1", "{", "max_fails", "3", "}"]])]),
    ("snippet importing a snippet", "(a) {\n log\n}\n(b) {\n import a\n errors\n}\n. {\n import b\n}",
     [(["."], [["log"], ["errors"]])]),
    ("snippet imported twice in a row", "(s) {\n log\n}\n. {\n import s\n import s\n}",
     [(["."], [["log"], ["log"]])]),
    ("one-line snippet imported twice", "(s) { log }\n. {\n import s\n import s\n}",
     [(["."], [["log"], ["log"]])]),
    ("snippet used by two blocks", "(s) {\n log\n}\na {\n import s\n}\nb {\n import s\n}",
     [(["a"], [["log"]]), (["b"], [["log"]])]),
    ("snippet name from env", "(whoami) {\n whoami\n}\n. {\n import {$DIR}\n}", [(["."], [["whoami"]])]),
    ("empty snippet", "(s) {\n}\n. {\n import s\n whoami\n}", [(["."], [["whoami"]])]),
    ("kubeadm", KUBEADM, [([".:53"], [
        ["errors"], ["health", "{", "lameduck", "5s", "}"], ["ready"],
        ["kubernetes", "cluster.local", "in-addr.arpa", "ip6.arpa", "{", "pods", "insecure",
         "fallthrough", "in-addr.arpa", "ip6.arpa", "ttl", "30", "}"],
        ["prometheus", ":9153"], ["forward", ".", "/etc/resolv.conf", "{", "max_concurrent", "1000", "}"],
        ["cache", "30"], ["loop"], ["reload"], ["loadbalance"]])]),
]


@pytest.mark.parametrize(("name", "text", "want"), CASES, ids=[c[0] for c in CASES])
def test_parse(name, text, want):
    assert shape(parse(text, "Corefile", env=ENV)) == want


# (name, Corefile, expected error prefix, fragment of the message)
ERRORS = [
    ("unexpected close at top", "}", "Corefile:1 - ", "Unexpected '}'"),
    ("extra close", ". {\n whoami\n}\n}", "Corefile:4 - ", "Unexpected '}'"),
    ("close in a brace-less block", "a.org\nwhoami\n}", "Corefile:3 - ", "Unexpected '}'"),
    ("missing close", ". {\n whoami\n", "Corefile:1 - ", "Unexpected EOF"),
    ("missing close names the end", ". {\n whoami\n", "Corefile:1 - ", "input ends at Corefile:2"),
    ("missing close of the server block", ". {\n forward . x {\n  tls\n}\n", "Corefile:1 - ",
     "Unexpected EOF"),
    ("missing close of a directive block", "a.org\nforward . x {\n tls\n", "Corefile:2 - ", "Unexpected EOF"),
    ("missing close of a nested block", "a.org\nforward . x {\n tls {\n", "Corefile:3 - ", "Unexpected EOF"),
    ("nested block closed, outer not", "a.org\nforward . x {\n tls {\n}\n", "Corefile:2 - ",
     "Unexpected EOF"),
    ("open brace without a key", "{\n whoami\n}", "Corefile:1 - ", "needs a key"),
    ("open brace for a directive", ". {\n whoami\n {\n }\n}", "Corefile:3 - ", "expected a directive name"),
    ("brace of a directive on the next line", ". {\n forward . x\n {\n }\n}", "Corefile:3 - ",
     "expected a directive name"),
    ("extra comma", "a.org, {\n}", "Corefile:1 - ", "Expected another key after ','"),
    ("comma then close", "a.org,\n}", "Corefile:2 - ", "Expected another key after ','"),
    ("comma at end of input", "\na.org,\n", "Corefile:2 - ", "expected another key after ','"),
    ("empty key between commas", "a.org,,b.org {\n}", "Corefile:1 - ", "empty key between commas"),
    ("empty quoted key", 'a.org "" {\n}', "Corefile:1 - ", "empty server block key"),
    ("key from an unset variable", "\n{$NOPE} {\n}", "Corefile:2 - ", "empty server block key"),
    ("brace glued to the key", "example.org{\n whoami\n}", "Corefile:1 - ", "put a space before"),
    ("unterminated quote", ". {\n log\n chaos \"x\n}\n", "Corefile:3 - ", "unterminated quoted string"),
    ("duplicate snippet", "(s) {\n}\n\n(s) {\n}", "Corefile:4 - ",
     "snippet 's' is already defined at Corefile:1"),
    ("snippet importing itself", "(s) {\n log\n import s\n}", "Corefile:3 - ", "snippet 's' imports itself"),
    ("snippet cycle", "(a) {\n import b\n}\n(b) {\n import a\n}\n. {\n import a\n}", "Corefile:5 - ",
     "import cycle"),
    ("snippet without a block", "(s)\nwhoami", "Corefile:2 - ", "needs a '{ ... }' block"),
    ("snippet at end of input", "(s)", "Corefile:1 - ", "needs a '{ ... }' block"),
    ("snippet among keys", "(s) a.org {\n}", "Corefile:1 - ", "must be the only key"),
    ("empty snippet name", "() {\n}", "Corefile:1 - ", "snippet name is empty"),
    ("unclosed snippet", "(s) {\n log\n", "Corefile:1 - ", "Unexpected EOF"),
    ("import without argument", "\nimport", "Corefile:2 - ", "import needs a snippet name or a file path"),
    ("import with two arguments", ". {\n import a b\n}", "Corefile:2 - ", "exactly one argument"),
    ("import of an empty name", ". {\n import \"\"\n}", "Corefile:2 - ", "non-empty"),
    ("import of a snippet defined later", ". {\n import s\n}\n(s) {\n}", "Corefile:2 - ",
     "no snippet of that name is defined above"),
    ("import with two stars", ". {\n whoami\n import *.d/*.conf\n}", "Corefile:3 - ", "at most one"),
]


@pytest.mark.parametrize(("name", "text", "prefix", "fragment"), ERRORS, ids=[c[0] for c in ERRORS])
def test_parse_errors(name, text, prefix, fragment, tmp_path):
    with pytest.raises(CorefileError) as e:
        parse(text, "Corefile", env={}, base_dir=str(tmp_path))
    assert str(e.value).startswith(prefix)
    assert fragment in e.value.message


def test_positions():
    cf = parse("# header\n\na.org b.org {\n    log  stdout\n}\n", "conf/Corefile", env={})
    block = cf.blocks[0]
    assert (block.file, block.line) == ("conf/Corefile", 3)
    assert [(k.text, k.line) for k in block.keys] == [("a.org", 3), ("b.org", 3)]
    assert [(t.text, t.file, t.line) for t in block.directives[0].tokens] == [
        ("log", "conf/Corefile", 4), ("stdout", "conf/Corefile", 4)]


def test_snippet_tokens_keep_their_place():
    cf = parse("(s) {\n  errors\n}\n. {\n  import s\n}\n", "Corefile", env={})
    tok = cf.blocks[0].directives[0].tokens[0]
    assert (tok.text, tok.file, tok.line) == ("errors", "Corefile", 2)


def test_key_level_import_block_position():
    cf = parse("(site) {\n  a.org {\n  }\n}\nimport site\n", "Corefile", env={})
    assert (cf.blocks[0].file, cf.blocks[0].line) == ("Corefile", 2)


def test_env_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("PORTOLAN_TEST_ZONE", "env.example")
    assert shape(parse("{$PORTOLAN_TEST_ZONE} {\n}")) == [(["env.example"], [])]


def test_kubeadm_dispenser_walk():
    cf = parse(KUBEADM, "Corefile", env={})
    assert len(cf.blocks) == 1
    block = cf.blocks[0]
    assert [d.name for d in block.directives] == [
        "errors", "health", "ready", "kubernetes", "prometheus", "forward", "cache", "loop", "reload",
        "loadbalance"]
    tokens = [t for d in block.directives if d.name == "kubernetes" for t in d.tokens]
    d = Dispenser("kubernetes", tokens)
    assert d.occurrences() == 1
    assert d.next()
    assert d.val() == "kubernetes"
    assert d.line() == 7
    assert d.remaining_args() == ["cluster.local", "in-addr.arpa", "ip6.arpa"]
    props = []
    while d.next_block():
        props.append((d.val(), d.remaining_args(), d.line()))
    assert props == [("pods", ["insecure"], 8), ("fallthrough", ["in-addr.arpa", "ip6.arpa"], 9),
                     ("ttl", ["30"], 10)]
    assert not d.next()


# -- files: load(), import of files and globs ------------------------------------------------


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_load_and_digest(tmp_path):
    main = write(tmp_path / "Corefile", ". {\n    import extra.conf\n    whoami\n}\n")
    extra = write(tmp_path / "extra.conf", "log\nerrors\n")
    cf = load(main, env={})
    assert shape(cf) == [(["."], [["log"], ["errors"], ["whoami"]])]
    assert cf.files == [main, extra]
    log_tok = cf.blocks[0].directives[0].tokens[0]
    assert (log_tok.file, log_tok.line) == (extra, 1)
    assert cf.blocks[0].directives[2].tokens[0].file == main
    data = Path(main).read_bytes() + Path(extra).read_bytes()
    assert cf.digest() == hashlib.sha512(data).hexdigest()
    # A change in an imported file changes the digest.
    write(tmp_path / "extra.conf", "log\n")
    assert load(main, env={}).digest() != cf.digest()


def test_digest_of_a_single_file(tmp_path):
    main = write(tmp_path / "Corefile", KUBEADM)
    assert load(main).digest() == hashlib.sha512(KUBEADM.encode()).hexdigest()
    assert parse(KUBEADM).digest() == hashlib.sha512(KUBEADM.encode()).hexdigest()


def test_import_glob_at_key_level(tmp_path):
    write(tmp_path / "sites" / "b.conf", "b.org {\n  log\n}\n")
    write(tmp_path / "sites" / "a.conf", "a.org {\n  whoami\n}\n")
    write(tmp_path / "sites" / "ignored.txt", "c.org {\n}\n")
    main = write(tmp_path / "Corefile", "import sites/*.conf\n. {\n}\n")
    cf = load(main, env={})
    assert shape(cf) == [(["a.org"], [["whoami"]]), (["b.org"], [["log"]]), (["."], [])]
    assert cf.files == [main, str(tmp_path / "sites" / "a.conf"), str(tmp_path / "sites" / "b.conf")]
    assert (cf.blocks[1].file, cf.blocks[1].line) == (str(tmp_path / "sites" / "b.conf"), 1)


def test_import_glob_star_in_a_directory(tmp_path):
    write(tmp_path / "one" / "zone.conf", "log\n")
    write(tmp_path / "two" / "zone.conf", "errors\n")
    main = write(tmp_path / "Corefile", ". {\n import */zone.conf\n}\n")
    assert shape(load(main, env={})) == [(["."], [["log"], ["errors"]])]


def test_import_glob_without_match_warns(tmp_path, caplog):
    main = write(tmp_path / "Corefile", ". {\n  import conf.d/*.conf\n  whoami\n}\n")
    with caplog.at_level(logging.WARNING, logger="corefile"):
        cf = load(main, env={})
    assert shape(cf) == [(["."], [["whoami"]])]
    assert [r.name for r in caplog.records] == ["corefile"]
    assert f"{main}:2" in caplog.text
    assert "conf.d/*.conf" in caplog.text


def test_import_glob_takes_only_star_as_wildcard(tmp_path):
    write(tmp_path / "a[1].conf", "log\n")
    write(tmp_path / "a1.conf", "errors\n")
    main = write(tmp_path / "Corefile", ". {\n  import a[1]*\n}\n")
    assert shape(load(main, env={})) == [(["."], [["log"]])]


def test_import_relative_to_the_importing_file(tmp_path):
    write(tmp_path / "sub" / "one.conf", "log\nimport two.conf\n")
    write(tmp_path / "sub" / "two.conf", "errors\n")
    write(tmp_path / "two.conf", "wrong\n")
    main = write(tmp_path / "Corefile", ". {\n import sub/one.conf\n}\n")
    assert shape(load(main, env={})) == [(["."], [["log"], ["errors"]])]


def test_import_absolute_path_and_env(tmp_path):
    extra = write(tmp_path / "elsewhere" / "x.conf", "log\n")
    env = {"CONF": str(tmp_path / "elsewhere")}
    cf = parse(". {\n import {$CONF}/x.conf\n}\n", "Corefile", env=env, base_dir="/nonexistent")
    assert shape(cf) == [(["."], [["log"]])]
    assert cf.files[1] == extra


def test_parse_imports_relative_to_base_dir(tmp_path):
    write(tmp_path / "x.conf", "log\n")
    cf = parse(". {\n import x.conf\n}\n", "Corefile", env={}, base_dir=str(tmp_path))
    assert shape(cf) == [(["."], [["log"]])]
    assert cf.files == [str(tmp_path / "Corefile"), str(tmp_path / "x.conf")]


def test_snippet_defined_in_an_imported_file(tmp_path):
    write(tmp_path / "snippets.conf", "(common) {\n  errors\n  import more.conf\n}\n")
    write(tmp_path / "more.conf", "log\n")
    main = write(tmp_path / "Corefile", "import snippets.conf\n. {\n  import common\n}\n")
    assert shape(load(main, env={})) == [(["."], [["errors"], ["log"]])]


def test_file_imported_twice_is_read_once(tmp_path):
    extra = write(tmp_path / "x.conf", "log\n")
    main = write(tmp_path / "Corefile", "a {\n import x.conf\n}\nb {\n import x.conf\n import x.conf\n}\n")
    cf = load(main, env={})
    assert shape(cf) == [(["a"], [["log"]]), (["b"], [["log"], ["log"]])]
    assert cf.files == [main, extra]


def test_brace_less_imported_file(tmp_path):
    write(tmp_path / "site.conf", "example.org\nwhoami\n")
    main = write(tmp_path / "Corefile", "import site.conf\n")
    assert shape(load(main, env={})) == [(["example.org"], [["whoami"]])]


def test_load_keeps_the_given_name(tmp_path):
    write(tmp_path / "Corefile", ". {\n  whoami\n")
    with pytest.raises(CorefileError) as e:
        load(str(tmp_path / "Corefile"), env={})
    assert str(e.value).startswith(f"{tmp_path}/Corefile:1 - Unexpected EOF")


def test_load_missing_main_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(str(tmp_path / "nope"))


# (name, files to write, expected prefix: {tmp} stands for tmp_path, message fragment)
FILE_ERRORS = [
    ("missing file", {"Corefile": ". {\n  whoami\n  import nope.conf\n}\n"},
     "{tmp}/Corefile:3 - ", "nope.conf' does not exist"),
    ("error inside an imported file", {"Corefile": ". {\n  import x.conf\n}\n", "x.conf": "log\n{\n"},
     "{tmp}/x.conf:2 - ", "Unexpected '{'"),
    ("stray brace in an imported file", {"Corefile": "import sites.conf\n", "sites.conf": "a {\n}\n}\n"},
     "{tmp}/sites.conf:3 - ", "Unexpected '}'"),
    ("quote in an imported file", {"Corefile": "import x.conf\n", "x.conf": "a {\n\n  log \"x\n}\n"},
     "{tmp}/x.conf:3 - ", "unterminated quoted string"),
    ("missing file imported by an imported file",
     {"Corefile": "import a.conf\n", "a.conf": "\n\nimport b.conf\n"},
     "{tmp}/a.conf:3 - ", "b.conf' does not exist"),
    ("self import", {"Corefile": ". {\n}\nimport Corefile\n"}, "{tmp}/Corefile:3 - ", "import cycle"),
    ("self import by glob", {"Corefile": "import *\n"}, "{tmp}/Corefile:1 - ", "import cycle"),
    ("two-file cycle",
     {"Corefile": "import a.conf\n", "a.conf": "import b.conf\n", "b.conf": "\nimport a.conf\n"},
     "{tmp}/b.conf:2 - ", "import cycle"),
    ("cycle through a snippet", {"Corefile": "(s) {\n import a.conf\n}\nimport s\n", "a.conf": "import s\n"},
     "{tmp}/a.conf:1 - ", "import cycle"),
    ("directory", {"Corefile": "import sub\n", "sub/x": ""}, "{tmp}/Corefile:1 - ", "is a directory"),
    ("invalid UTF-8", {"Corefile": "import x.conf\n", "x.conf": b"a {\n\xff\n}\n"}, "{tmp}/x.conf:2 - ",
     "not valid UTF-8"),
]


@pytest.mark.parametrize(("name", "files", "prefix", "fragment"), FILE_ERRORS,
                         ids=[c[0] for c in FILE_ERRORS])
def test_file_import_errors(name, files, prefix, fragment, tmp_path):
    for rel, content in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    with pytest.raises(CorefileError) as e:
        load(str(tmp_path / "Corefile"), env={})
    assert str(e.value).startswith(prefix.format(tmp=tmp_path))
    assert fragment in e.value.message


def test_snippet_import_limit(monkeypatch):
    monkeypatch.setattr(corefile.imports, "SNIPPET_IMPORT_LIMIT", 3)
    text = "(s) {\n log\n}\n. {\n" + " import s\n" * 4 + "}\n"
    with pytest.raises(CorefileError) as e:
        parse(text, "Corefile", env={})
    assert str(e.value).startswith("Corefile:8 - ")
    assert "more than 3 snippet imports" in str(e.value)


def test_exponential_snippets_stop_at_the_default_limit():
    # s0 pastes s1 twice, s1 pastes s2 twice, ...: 2**15 pastes, no cycle, stopped by the limit.
    defs = "(s15) {\n log\n}\n" + "".join(
        f"(s{i}) {{\n import s{i + 1}\n import s{i + 1}\n}}\n" for i in range(14, -1, -1))
    with pytest.raises(CorefileError, match="more than 10000 snippet imports"):
        parse(defs + ". {\n import s0\n}\n", "Corefile", env={})


def test_file_import_limit(monkeypatch, tmp_path):
    monkeypatch.setattr(corefile.imports, "FILE_IMPORT_LIMIT", 2)
    write(tmp_path / "x.conf", "log\n")
    main = write(tmp_path / "Corefile", ". {\n import x.conf\n import x.conf\n import x.conf\n}\n")
    with pytest.raises(CorefileError) as e:
        load(main, env={})
    assert str(e.value).startswith(f"{main}:4 - ")
    assert "more than 2 file imports" in str(e.value)
