"""Record types dnslib does not know, registered so they pack, parse and print like the others."""

from __future__ import annotations

from dnslib.dns import RDMAP, TXT


class HINFO(TXT):
    """HINFO is two character-strings (CPU, OS): on the wire exactly a two-string TXT."""

    def __repr__(self) -> str:
        return " ".join('"' + s.decode(errors="replace").replace('"', '\\"') + '"' for s in self.data)


RDMAP.setdefault("HINFO", HINFO)
