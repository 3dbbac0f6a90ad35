"""Model -> nginx.conf text, through the jinja2 templates in ``templates/``.

StrictUndefined turns a typo in a template into an error instead of an empty string. There
is no HTML autoescaping (it is the wrong language); instead every string goes through the
``q`` filter (validate.nginx_quote), and values were already validated by type. The one
exception is snippet annotations, raw nginx by design, rendered only when the ConfigMap sets
allow-snippet-annotations (ingress/annotations.py).

The configuration carries its own hash, served by nginx's status socket, so the controller
can tell when a reload has really taken effect. The hash is taken over the text rendered with
a fixed placeholder, then written in: identical models give byte-identical configurations.
"""

from __future__ import annotations

import hashlib
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ingress import features, validate
from ingress.features import files as feature_files
from ingress.layout import TEMP_KINDS, Layout
from ingress.model import CATCH_ALL, DEFAULT_BACKEND, Model, Server
from ingress.pooling import POOLED_ROUTE, Pool, Pooler
from ingress.settings import NginxSettings
from ingress.validate import nginx_quote

# templates/ sits next to the package in the source tree (and editable installs). A wheel
# has no place for a top-level directory, so an installed layout is expected to ship it as
# data files under <prefix>/share/portolan/templates; --templates-dir overrides both.
SOURCE_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
INSTALLED_TEMPLATES = Path(sys.prefix) / "share" / "portolan" / "templates"


def default_templates() -> Path:
    for candidate in (SOURCE_TEMPLATES, INSTALLED_TEMPLATES):
        if (candidate / "nginx.conf.j2").is_file():
            return candidate
    return SOURCE_TEMPLATES  # the error then names the expected place


@dataclass(frozen=True, slots=True)
class Listen:
    """The addresses and ports nginx listens on for HTTP, HTTPS and stream services."""

    addresses: tuple[str, ...] = ("0.0.0.0",)
    http_port: int = 80
    https_port: int = 443

    def http(self) -> list[str]:
        return [_hostport(a, self.http_port) for a in self.addresses]

    def https(self) -> list[str]:
        return [_hostport(a, self.https_port) for a in self.addresses]

    def stream(self, port: int) -> list[str]:
        return [_hostport(a, port) for a in self.addresses]


def _hostport(address: str, port: int) -> str:
    return host_port(validate.ip(address, "bind address"), port)  # it lands unquoted in listen


def host_port(ip: str, port: int) -> str:
    """``ip:port`` for nginx, an IPv6 address in brackets (``ip``: validated, canonical)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def resolver_address(text: str) -> str:
    """A resolver for nginx: ``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` (ValueError otherwise)."""
    if validate.is_ip(text):
        ip = ipaddress.ip_address(text)
        return f"[{ip}]" if ip.version == 6 else str(ip)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not validate.is_ip(host.strip("[]")):
        raise ValueError(f"resolver {text!r} is not IP or IP:PORT")
    return host_port(str(ipaddress.ip_address(host.strip("[]"))), int(port))


@dataclass(frozen=True, slots=True)
class Fragment:
    """One server block: a host's own, rendered once per Server object (the model reuses
    unchanged ones), or a pool's (ingress/pooling.py), rendered when its names change."""

    key: str  # the host, or the pool's key
    settings: NginxSettings
    text: str
    digest: str
    server: Server | None = None  # a host's own block
    names: tuple[str, ...] = ()  # a pool's hosts


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered nginx.conf with its hash, and the pieces from which a partial one for ``nginx -t`` is made."""

    text: str
    hash: str
    frame: str = ""  # everything but the server blocks, with HASH_PLACEHOLDER and SERVERS_MARKER
    fragments: tuple[Fragment, ...] = ()

    def partial(self, servers: set[str]) -> str:
        """The configuration with only these blocks (hosts, pools; the catch-all always): what
        ``nginx -t`` must accept before the whole is loaded, when only they changed."""
        keep = [f.text for f in self.fragments if f.key in servers or f.key == CATCH_ALL]
        return self.frame.replace(HASH_PLACEHOLDER, self.hash).replace(SERVERS_MARKER, "".join(keep))


def server_name(server: Server) -> str:
    """nginx server_name: exact host; ``*.foo.com`` as a regex for exactly one label
    (nginx's own ``*.foo.com`` would also match ``a.b.foo.com``); ``_`` for the catch-all."""
    if server.host == CATCH_ALL:
        return CATCH_ALL
    if server.is_wildcard:
        suffix = server.host[2:].replace(".", "\\.")
        return f"~^[^.]+\\.{suffix}$"
    return server.host


def names_hash_sizes(model: Model) -> tuple[int, int]:
    """server_names_hash_bucket_size and _max_size that fit every exact name.

    nginx refuses to start when one name does not fit a bucket (a 60-character host is
    enough with the default 64), so size the bucket from the longest name: each element
    takes a pointer, the name and 2 bytes, aligned to 8, and a bucket ends with a pointer.
    """
    names = [host for host in (s.host for s in model.servers) if host != CATCH_ALL and not host.startswith("*.")]
    longest = max(map(len, names), default=1)
    element = (8 + longest + 2 + 7) // 8 * 8
    bucket = 64
    while bucket < element + 8:
        bucket *= 2
    max_size = 2048
    while max_size < 4 * len(names):
        max_size *= 2
    return bucket, max_size


HASH_PLACEHOLDER = "portolan0config0hash0placeholder"
SERVERS_MARKER = "# portolan0servers0marker\n"
# Debian's lua-nginx-module (libnginx-mod-http-lua) and the NDK module it needs, loaded first.
LUA_MODULES = ("/usr/lib/nginx/modules/ndk_http_module.so", "/usr/lib/nginx/modules/ngx_http_lua_module.so")


class Renderer:
    """Renders models into nginx.conf text with the templates, reusing the server blocks of unchanged servers."""

    def __init__(
        self,
        layout: Layout,
        listen: Listen,
        resolvers: tuple[str, ...] = (),
        templates: Path | None = None,
        stream_modules: tuple[str, ...] = (),
        lua_modules: tuple[str, ...] = LUA_MODULES,
        fallback_cert: Path | None = None,
        request_metrics: bool = True,
    ) -> None:
        self.layout = layout
        self.stream_modules = stream_modules
        self.request_metrics = request_metrics  # log_by_lua counts requests (ingress/requestmetrics.py)
        self.lua_modules = lua_modules
        self.templates = templates or default_templates()
        # The certificate nginx serves when the live data holds none for a handshake (before
        # the first push); the controller writes it under certs/.
        self.fallback_cert = fallback_cert or layout.cert("fallback")
        self.listen = listen
        self.resolvers = tuple(resolver_address(r) for r in resolvers)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.templates)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["q"] = nginx_quote
        self.env.filters["host_port"] = host_port
        self._template = self.env.get_template("nginx.conf.j2")
        self._fragments: dict[str, Fragment] = {}  # host -> its last rendered block
        self._pools: dict[str, Fragment] = {}  # pool key -> its last rendered block
        self.pooler = Pooler()

    def render(self, model: Model) -> Rendered:
        """The configuration of ``model``: the frame (everything but server blocks) rendered
        whole, each server block rendered only when its Server object is new.

        The configuration carries its own hash (nginx serves it back to confirm a reload): a
        digest of the frame (with a placeholder where the hash goes) and of each block's
        digest, so it costs the change, not the size. Whatever the placeholder meets, 16 hex
        digits cannot inject."""
        context = self._context(model)
        frame = self._template.render(**context, servers_marker=SERVERS_MARKER.rstrip("\n"))
        known, settings = self._fragments, model.settings
        own, pools = self.pooler.split(model.servers, settings)
        fragments = tuple(
            f if (f := known.get(server.host)) is not None and f.server is server and f.settings is settings
            else self._fragment(server, model, context)
            for server in own
        ) + tuple(self._pool(pool, tuple(names), settings, context) for pool, names in sorted(pools.items()))
        summary = hashlib.sha256(frame.encode())
        summary.update("".join([f.digest for f in fragments]).encode())
        digest = summary.hexdigest()[:16]
        head, _, tail = frame.replace(HASH_PLACEHOLDER, digest).partition(SERVERS_MARKER)
        text = "".join([head, *(f.text for f in fragments), tail])
        return Rendered(text, digest, frame, fragments)

    def _fragment(self, server: Server, model: Model, context: dict[str, object]) -> Fragment:
        found = self._fragments.get(server.host)
        if found is not None and found.server is server and found.settings is model.settings:
            return found
        text = self.env.get_template("server.j2").render(**context, server=server)  # jinja2 caches it
        made = self._fragments[server.host] = Fragment(server.host, model.settings, text,
                                                       hashlib.sha256(text.encode()).hexdigest(), server)  # fmt: skip
        if len(self._fragments) > 2 * len(model.servers) + 64:  # hosts gone for good
            hosts = {s.host for s in model.servers}
            self._fragments = {h: f for h, f in self._fragments.items() if h in hosts}
        return made

    def _pool(
        self, pool: Pool, names: tuple[str, ...], settings: NginxSettings, context: dict[str, object]
    ) -> Fragment:
        found = self._pools.get(pool.key)
        if found is not None and found.names == names and found.settings is settings:
            return found
        text = self.env.get_template("pool.j2").render(**context, pool=pool, names=names)
        made = self._pools[pool.key] = Fragment(pool.key, settings, text, hashlib.sha256(text.encode()).hexdigest(),
                                                names=names)  # fmt: skip
        return made

    def _context(self, model: Model) -> dict[str, object]:
        bucket, max_size = names_hash_sizes(model)
        https = self.listen.https_port
        return dict(
            model=model,
            settings=model.settings,
            config_hash=HASH_PLACEHOLDER,
            layout=self.layout,
            temp_paths=[(kind, self.layout.temp_path(kind)) for kind in TEMP_KINDS],
            listen_http=self.listen.http(),
            listen_https=self.listen.https(),
            https_port_suffix="" if https == 443 else f":{https}",
            resolvers=list(self.resolvers),
            names_bucket=bucket,
            names_max=max_size,
            server_name=server_name,
            stream_modules=self.stream_modules,
            njs_dir=str(self.templates / "njs"),
            l4_dir=str(self.layout.l4),
            stream_listen=self.listen.stream,
            lua_modules=self.lua_modules,
            lua_dir=str(self.templates / "lua"),
            fallback_cert=str(self.fallback_cert),
            status_socket=self.layout.status_socket_relative,
            default_backend=DEFAULT_BACKEND,
            pooled_route=POOLED_ROUTE,
            request_metrics=self.request_metrics,
            **features.template_context(str(feature_files.directory(self.layout))),
        )
