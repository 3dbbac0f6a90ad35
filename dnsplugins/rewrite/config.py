"""rewrite's setup: each `rewrite` line of a server block read into a rule."""

from __future__ import annotations

import re
from collections.abc import Callable

from dnslib import QTYPE

from corefile import CorefileError, Dispenser, Token, normalize_zone
from dnsplugins.rewrite.rules import (
    CLASSES,
    CONTINUE,
    EXACT,
    EXTRA_TYPES,
    MATCH_TYPES,
    MAX_REGEX_LEN,
    RCODES,
    REGEX,
    STOP,
    SUFFIX,
    TTL_NO_MAX,
    U32_MAX,
    ClampTTL,
    ClassRule,
    CnameRule,
    MapRcode,
    NameRule,
    OwnerNames,
    ReplyRule,
    Response,
    Rule,
    TypeRule,
    ValueNames,
    by_regex,
    groups_used,
    matcher,
    renamer,
    swap_suffix,
)


def err(tok: Token, message: str) -> CorefileError:
    return CorefileError(tok.file, tok.line, f"plugin/rewrite: {message}")


def compile_regex(tok: Token, what: str) -> re.Pattern[str]:
    if len(tok.text) > MAX_REGEX_LEN:
        raise err(tok, f"regex pattern too long ({len(tok.text)} characters, at most {MAX_REGEX_LEN})")
    try:
        return re.compile(tok.text)
    except (re.error, OverflowError, RecursionError):  # a huge {n}, deep nesting: not re.error
        raise err(tok, f"{what}: {tok.text}") from None


def check_groups(pattern: re.Pattern[str], source: Token, target: Token, prefix: str = "") -> None:
    if groups_used(target.text) > pattern.groups:
        raise err(target, f"{prefix}the rewrite regex pattern ({target.text}) uses more subexpressions than "
                          f"its corresponding matching regex pattern ({source.text})")


def parse_name(mode: str, field: Token, args: list[Token]) -> Rule:
    if len(args) < 2:
        raise err(field, "too few arguments for a name rule")
    if len(args) == 2:
        kind, source, target = EXACT, args[0], args[1]
    else:
        kind, source, target = args[0].text.lower(), args[1], args[2]
        if kind not in MATCH_TYPES:
            raise err(args[0], "name rule supports only exact, prefix, suffix, substring, and regex name "
                               f"matching, received: {args[0].text}")
    auto, answers = parse_answers(kind, args[3:]) if len(args) > 3 else (False, [])
    if kind == REGEX:
        pattern = compile_regex(source, "invalid regex matching pattern")
        check_groups(pattern, source, target)
        return NameRule(mode, renamer(kind, "", normalize_zone(target.text), pattern), auto, answers)
    src, dst = normalize_zone(source.text), normalize_zone(target.text)
    if kind == SUFFIX:
        # A suffix is undone by swapping the suffixes back, wherever the new one appears.
        if auto:
            back = swap_suffix(dst, src)
            answers = [OwnerNames(back), ValueNames(back), *answers]
        return NameRule(mode, renamer(kind, src, dst, None), False, answers)
    return NameRule(mode, renamer(kind, src, dst, None), auto or kind == EXACT, answers)


def parse_answers(kind: str, toks: list[Token]) -> tuple[bool, list[Response]]:
    """`answer (auto | name FROM TO | value FROM TO) [[answer] ...]...` after a name rule."""
    if len(toks) < 2:
        raise err(toks[0], f"invalid arguments for {kind} rule")
    auto = False
    answers: list[Response] = []
    explicit_names = 0
    i = 0
    while i < len(toks):
        if i == 0 and toks[0].text.lower() != "answer":
            raise err(toks[0], f"exceeded the number of arguments for a non-answer rule argument for {kind} rule")
        if toks[i].text.lower() == "answer":
            i += 1
            if i == len(toks):
                raise err(toks[i - 1], f"type missing for answer rule for {kind} rule")
        what = toks[i]
        option = what.text.lower()
        i += 1
        if option == "auto":
            auto = True
            continue
        if option not in ("name", "value"):
            raise err(what, f'invalid type "{what.text}" for answer rule for {kind} rule')
        if len(toks) - i < 2:
            raise err(what, f"{option} answer rule for {kind} rule: 2 arguments required")
        source, target = toks[i], toks[i + 1]
        i += 2
        pattern = compile_regex(source, f"{option} answer rule for {kind} rule: invalid regex matching pattern")
        check_groups(pattern, source, target, f"{option} answer rule for {kind} rule: ")
        mapper = by_regex(pattern, normalize_zone(target.text))
        if option == "name":
            answers.append(OwnerNames(mapper))
            explicit_names += 1
        else:
            answers.append(ValueNames(mapper))
    if auto and explicit_names:
        raise err(toks[0], "auto name answer rule cannot be combined with explicit name answer rules")
    return auto, answers


def type_code(tok: Token) -> int:
    name = tok.text.upper()
    code: int | None = QTYPE.reverse.get(name, EXTRA_TYPES.get(name))
    if code is None:
        raise err(tok, f'invalid type "{name}"')
    return code


def parse_type(mode: str, field: Token, args: list[Token]) -> Rule:
    if len(args) != 2:
        raise err(field, "type rules must have exactly two arguments")
    return TypeRule(mode, type_code(args[0]), type_code(args[1]))


def parse_class(mode: str, field: Token, args: list[Token]) -> Rule:
    if len(args) != 2:
        raise err(field, "class rules must have exactly two arguments")
    codes = []
    for tok in args:
        code = CLASSES.get(tok.text.upper())
        if code is None:
            raise err(tok, f'invalid class "{tok.text.upper()}"')
        codes.append(code)
    return ClassRule(mode, codes[0], codes[1])


def name_matcher(field: str, kind_tok: Token | None, value: Token) -> Callable[[str], bool]:
    """The NAME test of a ttl or rcode rule; without a TYPE it is an exact match."""
    kind = kind_tok.text.lower() if kind_tok is not None else EXACT
    if kind not in MATCH_TYPES:
        assert kind_tok is not None
        raise err(kind_tok, f"{field} rule supports only exact, prefix, suffix, substring, and regex name matching")
    if kind == REGEX:
        return matcher(kind, "", compile_regex(value, f"invalid regex pattern in a {field} rule"))
    return matcher(kind, normalize_zone(value.text), None)


def u32(text: str) -> int | None:
    # Only plain ASCII digits, as Go's ParseUint: int() would also take "+5", "1_0" and other scripts.
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= U32_MAX else None


def ttl_range(text: str) -> tuple[int, int] | None:
    """SECONDS, MIN-MAX, MIN- or -MAX as (low, high); None if invalid (a bare "-" included)."""
    parts = text.split("-")
    if len(parts) == 1:
        n = u32(parts[0])
        return (n, n) if n is not None else None
    if len(parts) != 2 or parts == ["", ""]:
        return None
    low = u32(parts[0]) if parts[0] else 0
    high = u32(parts[1]) if parts[1] else TTL_NO_MAX
    if low is None or high is None or low > high:
        return None
    return low, high


def parse_ttl(mode: str, field: Token, args: list[Token]) -> Rule:
    if len(args) < 2:
        raise err(field, f"too few ({len(args)}) arguments for a ttl rule")
    if len(args) > 3:
        raise err(args[3], "too many arguments for a ttl rule")
    value = args[-1]
    bounds = ttl_range(value.text)
    if bounds is None:
        raise err(value, f"invalid TTL '{value.text}' for a ttl rule")
    kind = args[0] if len(args) == 3 else None
    return ReplyRule(mode, name_matcher("ttl", kind, args[-2]), ClampTTL(*bounds))


def rcode_code(tok: Token, what: str) -> int:
    text = tok.text
    n = u32(text)
    code = n if n is not None and n <= 23 else RCODES.get(text.upper())
    if code is None:
        raise err(tok, f"invalid {what} RCODE '{text}' for a rcode rule")
    return code


def parse_rcode(mode: str, field: Token, args: list[Token]) -> Rule:
    if len(args) < 3:
        raise err(field, f"too few ({len(args)}) arguments for a rcode rule")
    if len(args) > 4:
        raise err(args[4], "too many arguments for a rcode rule")
    old = rcode_code(args[-2], "matching")
    new = rcode_code(args[-1], "replacement")
    if new > 15:
        # Codes above 15 live partly in the OPT record; a rewritten header cannot carry them.
        raise err(args[-1], f"replacement RCODE '{args[-1].text}' does not fit the header (0-15)")
    kind = args[0] if len(args) == 4 else None
    return ReplyRule(mode, name_matcher("rcode", kind, args[-3]), MapRcode(old, new))


def parse_cname(mode: str, field: Token, args: list[Token]) -> Rule:
    if len(args) < 2:
        raise err(field, f"too few ({len(args)}) arguments for a cname rule")
    if len(args) > 3:
        raise err(args[3], "too many arguments for a cname rule")
    kind = args[0].text.lower() if len(args) == 3 else EXACT
    if kind not in MATCH_TYPES:
        raise err(args[0], f"unknown cname rewrite type: {kind}")
    source, target = args[-2], args[-1]
    if kind == REGEX:
        pattern = compile_regex(source, "invalid regex pattern in a cname rule")
        check_groups(pattern, source, target)
        return CnameRule(mode, renamer(kind, "", target.text.lower(), pattern))
    if kind == EXACT:  # a target is always fully qualified, so an exact name must be too
        return CnameRule(mode, renamer(kind, normalize_zone(source.text), normalize_zone(target.text), None))
    # CoreDNS takes prefix, suffix and substring as written (lower-cased): `prefix chat.openai.com`
    # must match the target chat.openai.com.cdn.example.net.
    return CnameRule(mode, renamer(kind, source.text.lower(), target.text.lower(), None))


def parse_edns0(mode: str, field: Token, args: list[Token]) -> Rule:
    raise err(field, "edns0 rules are not supported yet")


FIELDS: dict[str, Callable[[str, Token, list[Token]], Rule]] = {
    "name": parse_name, "type": parse_type, "class": parse_class, "ttl": parse_ttl, "rcode": parse_rcode,
    "cname": parse_cname, "edns0": parse_edns0,
}


def new_rule(head: Token, toks: list[Token]) -> Rule:
    """One rule from the words of one directive (its line, or its block's lines run together)."""
    if not toks:
        raise err(head, "no rule type specified for rewrite")
    mode = STOP
    first = toks[0].text.lower()
    if first in (STOP, CONTINUE):
        if len(toks) < 2:
            raise err(toks[0], f"{first} rule must begin with a rule type")
        mode = first
        toks = toks[1:]
    field = toks[0]
    kind = field.text.lower()
    if kind == "answer":
        raise err(field, "response rewrites must begin with a name rule")
    build = FIELDS.get(kind)
    if build is None:
        raise err(field, f'invalid rule type "{field.text}"')
    return build(mode, field, toks[1:])


def parse(d: Dispenser) -> list[Rule]:
    rules: list[Rule] = []
    while d.next():
        head = d.token()
        toks: list[Token] = []
        while d.next_arg():
            toks.append(d.token())
        if d.next_block():
            if len(toks) >= 2:
                # CoreDNS reads a block only when the line itself holds no rule; say so rather than guess.
                raise err(head, "a rule written on the directive's line cannot also have a block")
            while True:
                toks.append(d.token())
                while d.next_arg():
                    toks.append(d.token())
                if not d.next_block():
                    break
        rules.append(new_rule(head, toks))
    return rules
