"""One DNS query as a plugin sees it: the parsed message plus who asked, how, and for which zone."""

from __future__ import annotations

from collections.abc import Callable

from dnslib import QTYPE, DNSHeader, DNSQuestion, DNSRecord

from dnsserver.wire.consts import OPT_DO, TYPE_OPT
from dnsserver.wire.views import Metadata, meta_value


class Request:
    """A parsed query. `qname` keeps the client's spelling; `name` is the lower-cased form to match on."""

    __slots__ = (
        "answered_by",
        "client_ip",
        "client_port",
        "do",
        "edns",
        "edns_version",
        "family",
        "local_ip",
        "meta",
        "msg",
        "name",
        "opt_options",
        "proto",
        "qclass",
        "qname",
        "qtype",
        "server",
        "udp_size",
        "wire",
        "wire_size",
        "zone",
    )

    def __init__(
        self,
        msg: DNSRecord,
        wire: bytes,
        client: tuple[str, int],
        proto: str,
        local_ip: str,
        server: str,
    ) -> None:
        self.msg = msg
        self.wire = wire  # the query exactly as received (forward relays it; the cache keys on it)
        self.wire_size = len(wire)
        self.client_ip = client[0]
        self.client_port = client[1]
        self.proto = proto
        self.family = 2 if ":" in self.client_ip else 1
        self.local_ip = local_ip
        self.server = server
        self.zone = "."
        q = msg.q
        self.qname = str(q.qname)
        self.name = self.qname.lower()
        self.qtype = q.qtype
        self.qclass = q.qclass
        self.edns = False
        self.do = False
        self.udp_size = 512
        self.edns_version = 0
        for rr in msg.ar:
            if rr.rtype == TYPE_OPT:
                self.edns = True
                self.udp_size = max(512, rr.rclass)
                self.edns_version = (rr.ttl >> 16) & 0xFF
                self.do = bool(rr.ttl & OPT_DO)
                break
        # The plugin that wrote the reply (the `plugin` label of coredns_dns_responses_total). None until
        # someone answers; "" when a plugin hands back a reply the server would have made (errors' SERVFAIL).
        self.answered_by: str | None = None
        self.meta: Metadata = {}
        # EDNS0 options (wire form) for the OPT record the server writes in the reply: nsid's NSID.
        self.opt_options = b""

    # -- metadata (the metadata plugin): labels "plugin/NAME" -> a value, or a function giving it when read

    def set_meta(self, label: str, value: str | Callable[[], str]) -> None:
        """Note `value` under `label` for the plugins after this one (and log's {/LABEL}). A function is
        called only when the value is read, at most once. Labels must contain a slash, as CoreDNS's."""
        if "/" not in label:
            raise ValueError(f"metadata label {label!r} has no slash (labels are plugin/NAME)")
        self.meta[label] = value

    def meta_value(self, label: str) -> str:
        """The value noted under `label`; "" when none was (CoreDNS's "no metadata")."""
        return meta_value(self.meta, label)

    def meta_labels(self) -> list[str]:
        """The labels noted so far, sorted."""
        return sorted(self.meta)

    @property
    def type_name(self) -> str:
        name: str = QTYPE.get(self.qtype, f"TYPE{self.qtype}")
        return name

    @property
    def max_size(self) -> int:
        """The largest reply the client accepts: its EDNS0 size on UDP (512 without EDNS), 64 KiB on TCP."""
        return self.udp_size if self.proto == "udp" else 65535

    def reply(self, rcode: int = 0, aa: bool = False) -> DNSRecord:
        """An empty reply to this query: ID, opcode and RD copied, the question as the client spelled it."""
        h = self.msg.header
        return DNSRecord(
            DNSHeader(id=h.id, qr=1, opcode=h.opcode, aa=int(aa), rd=h.rd, ra=0, rcode=rcode),
            q=DNSQuestion(self.msg.q.qname, self.qtype, self.qclass),
        )

    def clone_for(self, qname: str, qtype: int | None = None, qclass: int | None = None) -> Request:
        """A copy asking another name, type or class: what `rewrite` and CNAME chasing pass down the chain.

        Metadata is shared: what a plugin notes about the query holds for the exchange the client made.
        """
        h = self.msg.header
        msg = DNSRecord(
            DNSHeader(id=h.id, opcode=h.opcode, rd=h.rd, cd=h.cd, ad=h.ad),
            q=DNSQuestion(qname, self.qtype if qtype is None else qtype, self.qclass if qclass is None else qclass),
        )
        msg.ar = list(self.msg.ar)
        new = Request(msg, msg.pack(), (self.client_ip, self.client_port), self.proto, self.local_ip,
                      self.server)
        new.zone = self.zone
        new.meta = self.meta
        return new
