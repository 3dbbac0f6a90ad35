"""Go-style durations as Corefiles write them: "5s", "1m30s", "500ms", "1h"."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in `text`; raises ValueError like Go's time.ParseDuration does for bad input."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def go_duration(seconds: float) -> str:
    """`seconds` as Go's time.Duration prints itself: "30s", "5m0s", "1h0m0s", "1.5s", "20ms"."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign, u = ("-", -ns) if ns < 0 else ("", ns)

    def frac(v: int, prec: int) -> tuple[int, str]:
        whole, rest = divmod(v, 10**prec)
        digits = f"{rest:0{prec}d}".rstrip("0")
        return whole, "." + digits if digits else ""

    if u < 1000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        whole, f = frac(u, 3)
        return f"{sign}{whole}{f}µs"
    if u < 1_000_000_000:
        whole, f = frac(u, 6)
        return f"{sign}{whole}{f}ms"
    secs, f = frac(u, 9)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    out = f"{s}{f}s"
    if h or m:
        out = f"{m}m{out}"
    if h:
        out = f"{h}h{out}"
    return sign + out


def format_duration(seconds: float) -> str:
    """The shortest spelling, for messages ("5s", "1m"); go_duration when CoreDNS's exact form matters."""
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds}s"
