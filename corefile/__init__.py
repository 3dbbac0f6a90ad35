"""The Corefile language: CoreDNS's configuration format (a Caddyfile dialect).

`load` / `parse` turn a Corefile into server blocks of directives; `parse_key` turns a block's
keys into zones; a `Dispenser` is what a plugin's setup() reads its directive with. Every problem
is a `CorefileError` whose text starts with FILE:LINE. Which directives exist and what their
arguments mean is not this package's business.
"""

from corefile.dispenser import Dispenser
from corefile.errors import CorefileError
from corefile.lexer import Token, tokenize
from corefile.model import Corefile, Directive, ServerBlock
from corefile.parser import load, parse
from corefile.zones import DEFAULT_PORTS, ZoneAddr, normalize_zone, parse_key, reverse_zones

__all__ = [
    "DEFAULT_PORTS",
    "Corefile",
    "CorefileError",
    "Directive",
    "Dispenser",
    "ServerBlock",
    "Token",
    "ZoneAddr",
    "load",
    "normalize_zone",
    "parse",
    "parse_key",
    "reverse_zones",
    "tokenize",
]
