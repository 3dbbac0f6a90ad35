"""The `portolan` command: dispatches to the DNS server or the ingress controller."""

from __future__ import annotations

import sys

from portolan import __version__

USAGE = """usage: portolan COMMAND [ARGS...]

commands:
  dns       run the DNS server (CoreDNS flags: -conf FILE, -dns.port N, -plugins, -version, -quiet, -pidfile FILE)
  ingress   run the ingress controller
  version   print the version
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd == "dns":
        from dnsserver.cli import main as dns_main

        return dns_main(rest)
    if cmd == "ingress":
        from ingress.cli import main as ingress_main  # imported here: `portolan dns` never loads the controller

        return ingress_main(rest)
    if cmd in ("version", "-version", "--version"):
        print(f"portolan {__version__}")
        return 0
    print(f"portolan: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr, end="")
    return 2


if __name__ == "__main__":
    sys.exit(main())
