"""Environment variable references inside Corefile tokens: ``{$NAME}`` and ``{%NAME%}``.

A reference may sit anywhere inside a token (``{$ZONE}:53``, ``/etc/{$SITE}/zones``) and works in
every position: keys, directive names, arguments and import paths. An unset variable becomes the
empty string. Substitution happens once per token after lexing, so a value is never split into
several tokens, and a value that itself looks like a reference is left as it is (no rescanning,
hence no way to loop).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# The name runs to the first closing delimiter; braces are excluded so that "{1}"-style
# placeholders of other plugins (rewrite, template) and stray braces are never mistaken for one.
_REFERENCE = re.compile(r"\{\$([^{}]+)\}|\{%([^{}%]+)%\}")


def substitute(text: str, env: Mapping[str, str]) -> str:
    """`text` with every environment reference replaced by its value from `env`."""
    if "{" not in text:
        return text
    return _REFERENCE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)
