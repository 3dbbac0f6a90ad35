"""Hostile values (the injection CVEs of ingress-nginx, section e of the reference) through
the whole controller and real nginx: every value below is aimed at an annotation, a host or a
path, each in its own Ingress. None may reach nginx.conf (each carries the marker PWNED, which
is grepped for case-insensitively, since hosts are lower-cased), each offending Ingress is
reported (log, Event, metric) and left out, and nginx keeps serving the other Ingresses."""

from __future__ import annotations

import logging

from kubewatch import Store
from tests.ingress import objects as o
from tests.ingress.conftest import metric, services, until
from tests.ingress.objects import A

MARK = "pwned"

# (annotation without the prefix, value); extra annotations some need to take effect.
HOSTILE_ANNOTATIONS: list[tuple[str, str]] = [
    ("rewrite-target", "/$1; ssl_engine PWNED"),
    ("rewrite-target", '/x"; PWNED'),
    ("rewrite-target", "/\nPWNED"),
    ("rewrite-target", "/${PWNED}"),
    ("rewrite-target", "/$host#PWNED"),
    ("use-regex", "true;PWNED"),
    ("enable-access-log", "false;PWNED"),
    ("ssl-redirect", "true\nPWNED"),
    ("force-ssl-redirect", "PWNED"),
    ("backend-protocol", "HTTP;PWNED"),
    ("backend-protocol", "FCGI PWNED"),
    ("proxy-body-size", "1m; PWNED"),
    ("proxy-body-size", "8m\r\nPWNED"),
    ("proxy-body-size", "1m}PWNED{"),
    ("proxy-connect-timeout", "5; PWNED"),
    ("proxy-read-timeout", "60 PWNED"),
    ("proxy-send-timeout", "$PWNED"),
    ("proxy-buffering", "on; PWNED"),
    ("whitelist-source-range", "10.0.0.0/8; allow all; #PWNED"),
    ("allowlist-source-range", "10.0.0.0/8\nPWNED"),
    ("allowlist-source-range", "fe80::1%eth0;PWNED"),
    ("denylist-source-range", "1.2.3.4 } PWNED {"),
    ("affinity", "cookie;PWNED"),
    ("session-cookie-name", "a; PWNED"),
    ("session-cookie-name", "a=b\\PWNED"),
    ("permanent-redirect", "https://x.com/;PWNED"),
    ("permanent-redirect", 'https://x.com/"PWNED'),
    ("permanent-redirect", "https://x.com/$PWNED"),
    ("permanent-redirect", "javascript:PWNED"),
    ("permanent-redirect", "https://x.com/#PWNED"),
    ("permanent-redirect", "https://x.com/ PWNED"),
    ("permanent-redirect", "https://x.com/\nreturn 200 PWNED"),
    ("permanent-redirect", "https://x.com\\PWNED"),
    ("permanent-redirect", "https://PWNED{}.com/"),
    ("permanent-redirect-code", "301;PWNED"),
    ("temporal-redirect", "http://a.com/}PWNED"),
    ("temporal-redirect", "//PWNED.com"),
    ("app-root", "/app;PWNED"),
    ("app-root", '/app"PWNED'),
    ("cors-allow-origin", "https://a.com;PWNED"),
    ("cors-allow-methods", "GET; PWNED"),
    ("cors-allow-headers", 'X-A"PWNED'),
    ("cors-expose-headers", "X\nPWNED"),
    ("cors-max-age", "1;PWNED"),
    ("cors-allow-credentials", "true;PWNED"),
    ("limit-rps", "10;PWNED"),
    ("limit-connections", "1 PWNED"),
    ("upstream-vhost", "a.com;PWNED"),
    ("upstream-vhost", 'a.com"PWNED'),
    ("upstream-vhost", "$PWNED"),
    ("upstream-vhost", "a.com\nproxy_pass http://PWNED"),
    ("canary-weight", "10;PWNED"),
    ("affinity-mode", "balanced;PWNED"),
    ("canary-weight-total", "1000;PWNED"),
    ("canary-weight-total", "1000 PWNED"),
    ("canary-weight-total", "$PWNED"),
    ("canary-weight-total", "1000}PWNED{"),
    ("canary-weight-total", "1000\nPWNED"),
    ("canary-weight-total", "0x3e8PWNED"),
    ("canary-by-header", "X-A;PWNED"),
    ("canary-by-header-value", "v1;PWNED"),
    ("canary-by-header-value", 'v1"PWNED'),
    ("canary-by-header-value", "$PWNED"),
    ("canary-by-header-value", "v1 PWNED"),
    ("canary-by-header-value", "v1}PWNED{"),
    ("canary-by-header-pattern", "^a$;PWNED"),
    ("canary-by-header-pattern", '"PWNED'),
    ("canary-by-header-pattern", 'a{1}"}PWNED{'),
    ("canary-by-header-pattern", "a${PWNED}"),
    ("canary-by-header-pattern", "a{1};}PWNED{"),
    ("canary-by-header-pattern", "a{99999}PWNED"),
    ("canary-by-header-pattern", "\\dPWNED"),
    ("canary-by-header-pattern", "(?{PWNED})"),
    ("canary-by-header-pattern", "a$PWNED"),
    ("canary-by-header-pattern", "a\nPWNED"),
    ("canary-by-header-pattern", "a#PWNED"),
    ("canary-by-header-pattern", "a PWNED"),
    ("canary-by-cookie", "c;PWNED"),
    ("canary-by-cookie", "c=always|PWNED"),
    ("canary-by-cookie", "c.*PWNED"),
    ("session-cookie-path", "/;PWNED"),
    ("session-cookie-path", "/$PWNED"),
    ("session-cookie-path", '/"PWNED'),
    ("session-cookie-path", "/\nSet-Cookie: PWNED"),
    ("session-cookie-path", "/x; Domain=PWNED.com"),
    ("session-cookie-expires", "60;PWNED"),
    ("session-cookie-max-age", "60 PWNED"),
    ("session-cookie-max-age", "$PWNED"),
    ("session-cookie-samesite", "Lax; PWNED"),
    ("session-cookie-secure", "true}PWNED"),
    ("session-cookie-domain", "a.com;PWNED"),
    ("session-cookie-domain", "a.com; Path=/PWNED"),
    ("session-cookie-domain", 'a.com"PWNED'),
    ("session-cookie-domain", "$PWNED.com"),
    ("session-cookie-domain", "a.com\nSet-Cookie: PWNED"),
    ("session-cookie-domain", "a.com\r\nPWNED"),
    ("session-cookie-domain", "PWNED.com}"),
    ("session-cookie-domain", "{PWNED}.com"),
    ("session-cookie-domain", "PWNED.com#"),
    ("session-cookie-domain", "PWNED\\.com"),
    ("session-cookie-domain", "*.PWNED.com"),
    ("session-cookie-domain", "PWNED.com:443"),
    ("session-cookie-domain", "PWNED com"),
    ("session-cookie-domain", "..PWNED.com"),
    ("session-cookie-domain", "PWNED.com/x"),
    ("session-cookie-domain", "PWNED_x.com"),
    ("session-cookie-domain", "PWNED.com\x00"),
    ("preserve-trailing-slash", "true;PWNED"),
    ("upstream-hash-by", "$arg_id;PWNED"),
    ("upstream-hash-by", '$arg_id"PWNED'),
    ("upstream-hash-by", "$arg_id'PWNED"),
    ("upstream-hash-by", "$arg_id}PWNED{"),
    ("upstream-hash-by", "{PWNED}$arg_id"),
    ("upstream-hash-by", "$arg_id\nPWNED"),
    ("upstream-hash-by", "$arg_id\r\nPWNED"),
    ("upstream-hash-by", "$arg_id PWNED"),
    ("upstream-hash-by", "$arg_id#PWNED"),
    ("upstream-hash-by", "$arg_id\\PWNED"),
    ("upstream-hash-by", "${PWNED"),
    ("upstream-hash-by", "${arg_id;PWNED}"),
    ("upstream-hash-by", "PWNED"),  # no variable: every request on one endpoint
    ("upstream-hash-by", "${PWNED}"),  # well formed, but no such variable: nginx -t would fail
    ("upstream-hash-by", "$PWNED"),
    ("upstream-hash-by", "$arg_id$PWNED_x"),
    ("upstream-hash-by", "$portolan_PWNED"),
    ("upstream-hash-by", "$arg_id\x00PWNED"),
    ("load-balance", "ewma;PWNED"),
    ("load-balance", "round_robin PWNED"),
    ("load-balance", "ewma\nPWNED"),
    ("load-balance", "ewma}PWNED{"),
    ("load-balance", '"PWNED"'),
    ("load-balance", "${PWNED}"),
    ("load-balance", "chash;PWNED"),
    ("load-balance", "PWNED"),
    # IngressNightmare (CVE-2025-1974 and its siblings): values shaped like the auth-url,
    # auth-tls-match-cn and mirror-target injections, closing the directive and the blocks
    # around it to add ssl_engine / load_module (a shared object nginx -t would load), aimed at
    # the annotations Portolan does render.
    ("permanent-redirect", "http://x.example/#;\n}\n}\n}\nssl_engine /proc/1/fd/PWNED;\n#"),
    ("permanent-redirect", "http://x.example/;}}load_module /tmp/PWNED.so;#"),
    ("temporal-redirect", "https://x.example/\";\nload_module /tmp/PWNED.so;\n#"),
    ("rewrite-target", "/$1;\n}\n}\nssl_engine /tmp/PWNED.so;\n#"),
    ("upstream-vhost", "x.example;\n}\nload_module /tmp/PWNED.so;\n#"),
    ("canary-by-header-pattern", "CN=x$|.*)}\n}\n}\nssl_engine /proc/self/fd/PWNED;\n#"),
    ("canary-by-header-pattern", "^a$|.*){1}}}ssl_engine/PWNED"),
    ("cors-allow-origin", "https://a.example\n}\nssl_engine /tmp/PWNED.so;\n#"),
    ("session-cookie-path", "/;}\nload_module /tmp/PWNED.so;#"),
    ("app-root", "/app\";}\nssl_engine /tmp/PWNED.so;#"),
    ("upstream-hash-by", "$arg_id;}\nssl_engine /tmp/PWNED.so;#"),
    ("whitelist-source-range", "10.0.0.0/8;}\nssl_engine /tmp/PWNED.so;#"),
    # The feature groups (ingress/features/): auth, external auth, client certificates.
    ("auth-type", "basic;PWNED"),
    ("auth-type", "digest PWNED"),
    ("auth-secret", "htpasswd;PWNED"),
    ("auth-secret", "../PWNED"),
    ("auth-secret", "a/b/PWNED"),
    ("auth-secret-type", "auth-file;PWNED"),
    ("auth-realm", 'Realm"; PWNED'),
    ("auth-realm", "Realm $PWNED"),
    ("auth-realm", "Realm\nPWNED"),
    ("auth-realm", "Realm\\PWNED"),
    ("auth-url", "http://x.example/#;\n}\n}\n}\nssl_engine /tmp/PWNED.so;\n#"),
    ("auth-url", "http://x.example/auth;PWNED"),
    ("auth-url", 'http://x.example/"PWNED'),
    ("auth-url", "http://x.example/$PWNED"),
    ("auth-url", "http://x.example/${request_uri};PWNED"),
    ("auth-url", "http://$PWNED/"),
    ("auth-url", "http://portolanv0x.example/PWNED"),
    ("auth-url", "file:///PWNED"),
    ("auth-signin", "https://x.example/start?rd=$escaped_request_uri;PWNED"),
    ("auth-signin", "https://x.example/{PWNED}"),
    ("auth-signin-redirect-param", "rd;PWNED"),
    ("auth-method", "GET;PWNED"),
    ("auth-method", "get PWNED"),
    ("auth-response-headers", "X-User;PWNED"),
    ("auth-response-headers", "X-User, $PWNED"),
    ("auth-request-redirect", "/x;PWNED"),
    ("auth-request-redirect", '/x"PWNED'),
    ("auth-cache-key", "$remote_user;PWNED"),
    ("auth-cache-key", "$PWNED"),
    ("auth-cache-duration", "200 5m;PWNED"),
    ("auth-cache-duration", "200 PWNED"),
    ("auth-always-set-cookie", "true;PWNED"),
    ("auth-keepalive", "10;PWNED"),
    ("auth-keepalive-requests", "PWNED"),
    ("auth-keepalive-timeout", "60 PWNED"),
    ("auth-keepalive-share-vars", "PWNED"),
    ("auth-proxy-set-headers", "default/PWNED;"),
    ("enable-global-auth", "false;PWNED"),
    ("auth-tls-secret", "ca;PWNED"),
    ("auth-tls-secret", "ca\nPWNED"),
    ("auth-tls-verify-client", "on;PWNED"),
    ("auth-tls-verify-client", "optional_no_ca PWNED"),
    ("auth-tls-verify-depth", "1;PWNED"),
    ("auth-tls-error-page", "https://x.example/;PWNED"),
    ("auth-tls-error-page", "https://x.example/$PWNED"),
    ("auth-tls-pass-certificate-to-upstream", "true}PWNED"),
    ("auth-tls-match-cn", "CN=x$|.*)}\n}\n}\nssl_engine /tmp/PWNED.so;\n#"),
    ("auth-tls-match-cn", 'CN=a"PWNED'),
    ("auth-tls-match-cn", "CN=a;PWNED"),
    ("auth-tls-match-cn", "CN=(?{PWNED})"),
    ("auth-tls-match-cn", "CN=a\\PWNED"),
    ("auth-tls-match-cn", "O=PWNED"),
    ("proxy-ssl-secret", "default/ca;PWNED"),
    ("proxy-ssl-secret", "PWNED/../ca"),
    ("proxy-ssl-verify", "on;PWNED"),
    ("proxy-ssl-verify-depth", "1 PWNED"),
    ("proxy-ssl-name", "b.local;PWNED"),
    ("proxy-ssl-name", "$PWNED"),
    ("proxy-ssl-server-name", "on\nPWNED"),
    ("proxy-ssl-protocols", "TLSv1.2; PWNED"),
    ("proxy-ssl-ciphers", "HIGH;PWNED"),
    ("proxy-ssl-ciphers", 'HIGH" PWNED'),
    ("proxy-http-version", "1.1;PWNED"),
    ("proxy-next-upstream", "error; PWNED"),
    ("proxy-next-upstream-tries", "3}PWNED"),
    ("proxy-next-upstream-timeout", "5s;PWNED"),
    ("proxy-buffer-size", "8k;PWNED"),
    ("proxy-buffers-number", "4 PWNED"),
    ("proxy-max-temp-file-size", "$PWNED"),
    ("client-body-buffer-size", "1m\nPWNED"),
    ("proxy-request-buffering", "off;PWNED"),
    ("proxy-redirect-from", "http://a.com/;PWNED"),
    ("proxy-redirect-to", "https://PWNED{}.com/"),
    ("proxy-cookie-domain", "a.com PWNED;"),
    ("proxy-cookie-domain", "a.com b.com PWNED"),
    ("proxy-cookie-path", "/a /b;PWNED"),
    ("proxy-cookie-path", '/a "/PWNED'),
    ("connection-proxy-header", "close\r\nX-PWNED: 1"),
    ("connection-proxy-header", "close;PWNED"),
    ("x-forwarded-prefix", "/a;PWNED"),
    ("x-forwarded-prefix", '/a"PWNED'),
    ("x-forwarded-prefix", "$PWNED"),
    ("limit-rpm", "10;PWNED"),
    ("limit-rate", "100k PWNED"),
    ("limit-rate-after", "1}PWNED"),
    ("limit-allowlist", "10.0.0.0/8; PWNED"),
    ("limit-whitelist", "10.0.0.0/8\nPWNED"),
    ("temporal-redirect-code", "302;PWNED"),
]
# Snippets are off by default: these are ignored (the Ingress is served without them).
IGNORED_ANNOTATIONS = [
    ("configuration-snippet", "ssl_engine PWNED;"),
    ("server-snippet", "load_module /tmp/PWNED.so;"),
    ("auth-snippet", "PWNED;"),
    # IngressNightmare's own annotations, which Portolan does not implement: never rendered.
    ("mirror-target", "http://x.example/;}\nload_module /tmp/PWNED.so;#"),
    ("mirror-host", "x.example;\nssl_engine /tmp/PWNED.so;#"),
]
HOSTILE_HOSTS = [
    "PWNED.com;", "a.com\nPWNED", "a.com{PWNED}", '"PWNED".com', "a.com #PWNED", "PWNED.com:80",
    "~^PWNED$", "$PWNED.com", "PWNED\\.com", "*.PWNED.*", "PWNED..com", "PWNED.com\x00",
    "a.com;}\nssl_engine /tmp/PWNED.so;#",
]  # fmt: skip
HOSTILE_PATHS: list[tuple[str, bool]] = [  # (path, with use-regex)
    ("/a;PWNED", False), ("/a{PWNED}", False), ('/a"PWNED', False), ("/a\nPWNED", False), ("/a PWNED", False),
    ("/a#PWNED", False), ("/$PWNED", False), ("/a\\PWNED", False), ("/a%0aPWNED", False), ("/a%3BPWNED", False),
    ("/a%22PWNED", False), ("/../PWNED", False), ("/a%2fPWNED", False),
    ('/a{1}"}PWNED{', True), ('/a"PWNED', True), ("/a\\dPWNED", True), ("/(?{PWNED})", True), ("/a$PWNED", True),
    ("/a;PWNED", True), ("/a PWNED", True), ("/a(PWNED", True), ("/a${PWNED}", True), ("/a{1};}PWNED{", True),
    ('/a{1}";}location/{return 200 PWNED;}#', True), ("/a{1}\n}PWNED{", True), ("/a{1}\\}PWNED", True),
    ("/a{1}#}PWNED", True), ("/a{99999}PWNED", True), ("/(?<portolan_vhost>PWNED)", True),
    ('/x{1}"}\n}\nssl_engine /tmp/PWNED.so;\n#', True), ("/x;}\nload_module /tmp/PWNED.so;#", False),
]  # fmt: skip


# What an annotation of a group needs to be read at all (else it is ignored with a note).
_AUTH_URL = {A + "auth-url": "http://127.0.0.1:9/auth"}
_GROUP_NEEDS: dict[str, dict[str, str]] = {
    **{name: {A + "auth-type": "basic"} for name in ("auth-secret", "auth-secret-type", "auth-realm")},
    **{name: _AUTH_URL for name in ("auth-signin", "auth-signin-redirect-param", "auth-method", "auth-response-headers",
                                    "auth-request-redirect", "auth-cache-key", "auth-cache-duration",
                                    "auth-always-set-cookie", "auth-keepalive", "auth-keepalive-requests",
                                    "auth-keepalive-timeout", "auth-keepalive-share-vars", "auth-proxy-set-headers",
                                    "enable-global-auth")},
}  # fmt: skip
_TLS_SECRET = {A + "auth-tls-secret": "ca"}
_PROXY_SSL = {A + "proxy-ssl-secret": "ca"}


def hostile_ingresses() -> tuple[list[o.Obj], list[o.Obj]]:
    """(Ingresses to be rejected, Ingresses served with the hostile part ignored)."""
    rejected, ignored = [], []
    for i, (name, value) in enumerate(HOSTILE_ANNOTATIONS):
        annotations = {A + name: value}
        if name.startswith("cors-"):
            annotations[A + "enable-cors"] = "true"
        if name.startswith("canary-"):
            annotations[A + "canary"] = "true"
        if name.startswith("session-cookie-"):
            annotations[A + "affinity"] = "cookie"
        if name.startswith("auth-tls-") and name != "auth-tls-secret":
            annotations.update(_TLS_SECRET)
        if name.startswith("proxy-ssl-") and name != "proxy-ssl-secret":
            annotations.update(_PROXY_SSL)
        if name == "proxy-redirect-to":
            annotations[A + "proxy-redirect-from"] = "http://a.com/"
        annotations.update(_GROUP_NEEDS.get(name, {}))
        rule = o.rule(f"ann-{i}.evil.test", o.path("/", "web"))
        rejected.append(o.ingress(f"ann-{i}", rule, annotations=annotations))
    for i, (name, value) in enumerate(IGNORED_ANNOTATIONS):
        ignored.append(o.ingress(f"snip-{i}", o.rule(f"snip-{i}.evil.test", o.path("/", "web")),
                                 annotations={A + name: value}))  # fmt: skip
    for i, host in enumerate(HOSTILE_HOSTS):
        rejected.append(o.ingress(f"host-{i}", o.rule(host, o.path("/", "web"))))
    for i, (path, regex) in enumerate(HOSTILE_PATHS):
        annotations = {A + "use-regex": "true"} if regex else None
        path_type = "ImplementationSpecific" if regex else "Prefix"
        rejected.append(o.ingress(f"path-{i}", o.rule(f"path-{i}.evil.test", o.path(path, "web", path_type=path_type)),
                                  annotations=annotations))  # fmt: skip
    return rejected, ignored


def test_enough_hostile_values() -> None:
    rejected, ignored = hostile_ingresses()
    assert len(rejected) + len(ignored) >= 50
    for obj in rejected + ignored:
        text = repr(obj).lower()
        assert MARK in text, obj  # every value carries the marker the config is grepped for


async def test_hostile_values_never_reach_nginx(start_controller, backends, client_for, caplog) -> None:
    caplog.set_level(logging.WARNING)
    store = Store()
    await services(backends, store, web=("good",))
    o.put(store, o.ingress("good", o.rule("good.com", o.path("/", "web"))))
    controller = await start_controller(store)
    client = client_for(controller)
    assert (await client.request("good.com", "/")).backend == "good"

    rejected, ignored = hostile_ingresses()
    o.put(store, *rejected, *ignored)
    await until(lambda: _served(controller, len(ignored) + 1))

    conf = controller.layout.conf.read_text()
    assert MARK not in conf.lower()
    # Nothing hostile in any file nginx reads either (candidates are removed, certs are ours).
    for path in controller.layout.root.rglob("*"):
        if path.is_file() and path.suffix in (".conf", ".tmp"):
            assert MARK not in path.read_text(errors="replace").lower(), path
    model = controller.model
    assert model is not None
    assert sorted(r.ingress for r in model.rejected) == sorted(f"default/{i['metadata']['name']}" for i in rejected)
    assert metric(controller, "portolan_ingress_rejected_ingresses") == len(rejected)
    for obj in rejected:
        name = obj["metadata"]["name"]
        assert metric(controller, "portolan_ingress_rejected_total", namespace="default", ingress=name,
                      reason="invalid") == 1  # fmt: skip
        assert f"Ingress default/{name}: InvalidIngress" in caplog.text
    # The good Ingress and the ones whose snippets were ignored are served; nothing else.
    assert (await client.request("good.com", "/")).backend == "good"
    for obj in ignored:
        host = obj["spec"]["rules"][0]["host"]
        assert (await client.request(host, "/")).backend == "good"
    assert (await client.request("ann-0.evil.test", "/")).status == 404
    assert (await client.request("path-0.evil.test", "/a")).status == 404


async def _served(controller, count: int) -> bool:
    model = controller.model
    return model is not None and len(model.ingresses) == count and bool(model.rejected)


# Every ConfigMap key we read, and TCP/UDP services entries, with hostile values: each keeps
# its default (or is skipped) and is logged; none reaches nginx.conf.
HOSTILE_SETTINGS = {
    "ssl-redirect": "true; PWNED", "http-redirect-code": "308 PWNED", "hsts": "PWNED", "hsts-max-age": "1;PWNED",
    "hsts-include-subdomains": "true\nPWNED", "use-http2": "on;PWNED", "proxy-connect-timeout": "5;PWNED",
    "proxy-read-timeout": "60 PWNED", "proxy-send-timeout": "$PWNED", "proxy-body-size": "1m;PWNED",
    "proxy-buffering": "off}PWNED", "upstream-keepalive-connections": "1#PWNED",
    "upstream-keepalive-timeout": "60\"PWNED", "keep-alive": "75;PWNED", "worker-processes": "auto; PWNED",
    "max-worker-connections": "1024 PWNED", "worker-shutdown-timeout": "1{PWNED", "keep-alive-requests": "PWNED",
    "log-format-upstream": "$remote_addr'; PWNED '", "ssl-protocols": "TLSv1.3; PWNED",
    "use-forwarded-headers": "PWNED", "allow-snippet-annotations": "true;PWNED", "server-tokens": "PWNED",
    "load-balance": "ewma; PWNED", "lua-shared-dicts": "configuration_data: 10m;PWNED",
    "disable-access-log": "true;PWNED", "access-log-path": "/tmp/a.log;PWNED", "access-log-params": "buffer=16k PWNED",
    "enable-access-log-for-default-backend": "PWNED", "error-log-level": "notice; PWNED",
    "host-pool-threshold": "0;PWNED", "log-format-escape-json": "true;PWNED", "log-format-escape-none": "PWNED",
    "global-auth-url": "http://x.example/;}\nssl_engine /tmp/PWNED.so;#", "global-auth-method": "GET;PWNED",
    "global-auth-signin": "https://x.example/$PWNED", "global-auth-signin-redirect-param": "rd PWNED",
    "global-auth-response-headers": "X-A;PWNED", "global-auth-request-redirect": '/x"PWNED',
    "global-auth-always-set-cookie": "true;PWNED", "no-auth-locations": "/a;PWNED",
}  # fmt: skip
HOSTILE_TCP = {"9001": "default/web:80;PWNED", "9002": "default/PWNED", "9003": "default/web:80:PWNED",
               "PWNED": "default/web:80", "9004": "default/web:80\nPWNED"}  # fmt: skip


def test_enough_hostile_settings() -> None:
    from ingress.settings import KEYS

    assert set(HOSTILE_SETTINGS) == set(KEYS)


async def test_hostile_configmap_values_never_reach_nginx(start_controller, backends, client_for, caplog) -> None:
    caplog.set_level(logging.WARNING)
    store = Store()
    await services(backends, store, web=("good",))
    o.put(store, o.ingress("good", o.rule("good.com", o.path("/", "web"))), o.config_map("cfg", HOSTILE_SETTINGS),
          o.config_map("tcp", HOSTILE_TCP))  # fmt: skip
    controller = await start_controller(store, configmap=("default", "cfg"), tcp_services_configmap=("default", "tcp"))
    assert MARK not in controller.layout.conf.read_text().lower()
    assert "stream {" not in controller.layout.conf.read_text()
    assert (await client_for(controller).request("good.com", "/")).backend == "good"
    for key in HOSTILE_SETTINGS:
        assert f"configmap key {key!r}" in caplog.text
    assert caplog.text.count("tcp services entry") == len(HOSTILE_TCP)
