"""Every ingress-nginx annotation and what Portolan does with it: docs/annotations.md is
``markdown()``'s output, and tests/ingress/test_catalog.py regenerates it and compares, so the
file cannot drift from the code.

Whether an annotation is served comes from the code (ingress/annotations.py's parsers and the
feature groups' lists); what differs and why one is not served are written here, next to the
list, since only a person can say it. A name in neither the code nor NOT_SUPPORTED, or in both,
fails the test: a new parser must drop its "not supported" line, a new ingress-nginx annotation
must get a status.
"""

from __future__ import annotations

from ingress import features
from ingress.annotations import SUPPORTED

# ingress-nginx's annotations (docs/user-guide/nginx-configuration/annotations.md, prefix
# nginx.ingress.kubernetes.io/), and allowlist-source-range and limit-allowlist, the newer names
# its code also takes for whitelist-source-range and limit-whitelist.
INGRESS_NGINX: tuple[str, ...] = (
    "affinity", "affinity-canary-behavior", "affinity-mode", "allowlist-source-range", "app-root",
    "auth-always-set-cookie", "auth-cache-duration", "auth-cache-key", "auth-keepalive", "auth-keepalive-requests",
    "auth-keepalive-share-vars", "auth-keepalive-timeout", "auth-method", "auth-proxy-set-headers", "auth-realm",
    "auth-request-redirect", "auth-response-headers", "auth-secret", "auth-secret-type", "auth-signin",
    "auth-signin-redirect-param", "auth-snippet", "auth-tls-error-page", "auth-tls-match-cn",
    "auth-tls-pass-certificate-to-upstream", "auth-tls-secret", "auth-tls-verify-client", "auth-tls-verify-depth",
    "auth-type", "auth-url", "backend-protocol", "canary", "canary-by-cookie", "canary-by-header",
    "canary-by-header-pattern", "canary-by-header-value", "canary-weight", "canary-weight-total",
    "client-body-buffer-size", "configuration-snippet", "connection-proxy-header", "cors-allow-credentials",
    "cors-allow-headers", "cors-allow-methods", "cors-allow-origin", "cors-expose-headers", "cors-max-age",
    "custom-headers", "custom-http-errors", "default-backend", "denylist-source-range", "enable-access-log",
    "enable-cors", "enable-global-auth", "enable-modsecurity", "enable-opentelemetry", "enable-owasp-core-rules",
    "enable-rewrite-log", "force-ssl-redirect", "from-to-www-redirect", "http2-push-preload",
    "limit-allowlist", "limit-burst-multiplier", "limit-connections", "limit-rate", "limit-rate-after", "limit-rpm",
    "limit-rps",
    "limit-whitelist", "load-balance", "mirror-host", "mirror-request-body", "mirror-target", "modsecurity-snippet",
    "modsecurity-transaction-id", "opentelemetry-trust-incoming-span", "permanent-redirect",
    "permanent-redirect-code", "preserve-trailing-slash", "proxy-body-size", "proxy-buffer-size", "proxy-buffering",
    "proxy-buffers-number", "proxy-busy-buffers-size", "proxy-connect-timeout", "proxy-cookie-domain",
    "proxy-cookie-path", "proxy-http-version", "proxy-max-temp-file-size", "proxy-next-upstream",
    "proxy-next-upstream-timeout", "proxy-next-upstream-tries", "proxy-read-timeout", "proxy-redirect-from",
    "proxy-redirect-to", "proxy-request-buffering", "proxy-send-timeout", "proxy-ssl-ciphers", "proxy-ssl-name",
    "proxy-ssl-protocols", "proxy-ssl-secret", "proxy-ssl-server-name", "proxy-ssl-verify",
    "proxy-ssl-verify-depth", "rewrite-target", "satisfy", "server-alias", "server-snippet", "service-upstream",
    "session-cookie-change-on-failure", "session-cookie-conditional-samesite-none", "session-cookie-domain",
    "session-cookie-expires", "session-cookie-max-age", "session-cookie-name", "session-cookie-path",
    "session-cookie-samesite", "session-cookie-secure", "ssl-ciphers", "ssl-passthrough",
    "ssl-prefer-server-ciphers", "ssl-redirect", "stream-snippet", "temporal-redirect", "temporal-redirect-code",
    "upstream-hash-by", "upstream-hash-by-subset", "upstream-hash-by-subset-size", "upstream-vhost", "use-regex",
    "whitelist-source-range", "x-forwarded-prefix",
)  # fmt: skip

# Served, with a difference a migrating user may notice (the value's alphabet, a default).
DIFFERS: dict[str, str] = {
    "auth-type": "digest is done in Lua (Debian's nginx has no digest module): MD5, qop auth, stateless nonces "
    "valid 5 minutes and not counted (replayable within them)",
    "auth-secret-type": "digest takes auth-file only; auth-map keeps only keys whose value looks like a password hash",
    "auth-url": "only allow-listed nginx variables ($host, $escaped_request_uri, ...)",
    "auth-signin": "only allow-listed nginx variables ($host, $escaped_request_uri, ...)",
    "auth-keepalive": "kept-alive connections only to an auth-url whose host is an IP address",
    "auth-keepalive-share-vars": "moot: auth_request always shares the request's variables",
    "auth-tls-match-cn": "matched against the subject's whole CN (anchored), not anywhere in the DN",
    "auth-tls-verify-client": "with on, a plain-HTTP request answers 403 instead of passing unverified",
    "auth-tls-secret": "the host's certificate is then a file: renewing it reloads nginx; a broken Secret answers 503",
    "backend-protocol": "HTTP, HTTPS, GRPC and GRPCS; not FCGI or AUTO_HTTP",
    "load-balance": "round_robin and ewma (consistent hashing is upstream-hash-by)",
    "upstream-hash-by": "nginx variables from an allow-list, and constant text",
    "rewrite-target": "capture references ($1..$9) only, no other nginx variables",
    "permanent-redirect": "an http(s) URL without nginx variables",
    "temporal-redirect": "an http(s) URL without nginx variables",
    "proxy-ssl-secret": "tls.crt and tls.key are optional; a Secret without a usable ca.crt answers 503; such "
    "locations keep no connections alive to the backend (nginx keys that pool by address only)",
    "proxy-ssl-name": "a host name, no nginx variables",
    "proxy-ssl-protocols": "unset: nginx's default (TLSv1.2 TLSv1.3), not TLSv1 TLSv1.1 TLSv1.2",
    "proxy-next-upstream-tries": "at most 3 tries and one per endpoint (the balancer's cap)",
    "proxy-buffers-number": "at least 3 (nginx refuses fewer next to one busy buffer)",
    "proxy-redirect-from": "'off', 'default', a path or an http(s) URL; no variables or regexes",
    "proxy-redirect-to": "a path or an http(s) URL; no variables",
    "proxy-cookie-domain": "host names, no regexes or variables",
    "proxy-cookie-path": "paths, no regexes or variables",
    "x-forwarded-prefix": "a path of letters, digits and ._~/%=&+-",
}

# Not served (the annotation is ignored with a note, the Ingress is served without it), and why.
NOT_SUPPORTED: dict[str, str] = {
    "affinity-canary-behavior": "not yet (issue 15): canary routes keep their own affinity",
    "custom-headers": "not yet (issue 15): needs the ConfigMap's global-allowed-response-headers",
    "custom-http-errors": "not yet (issue 15): needs the default backend's error pages",
    "default-backend": "not yet (issue 15)",
    "enable-modsecurity": "Debian's nginx has no ModSecurity module",
    "enable-owasp-core-rules": "Debian's nginx has no ModSecurity module",
    "modsecurity-snippet": "Debian's nginx has no ModSecurity module",
    "modsecurity-transaction-id": "Debian's nginx has no ModSecurity module",
    "enable-opentelemetry": "Debian's nginx has no OpenTelemetry module",
    "opentelemetry-trust-incoming-span": "Debian's nginx has no OpenTelemetry module",
    "enable-rewrite-log": "not yet (issue 15)",
    "from-to-www-redirect": "not yet (issue 15): the other name must first be checked against every other "
    "Ingress's hosts, so that one Ingress cannot take another's host",
    "server-alias": "not yet (issue 15): an alias must first be checked against every other Ingress's hosts and "
    "aliases (nginx gives a name claimed twice to whichever server comes first), so that one Ingress cannot take "
    "another's host",
    "http2-push-preload": "removed from nginx 1.25.1 (HTTP/2 push), as from ingress-nginx",
    "mirror-host": "not yet (issue 15); its value reached nginx.conf unchecked in ingress-nginx (IngressNightmare)",
    "mirror-request-body": "not yet (issue 15)",
    "mirror-target": "not yet (issue 15); its value reached nginx.conf unchecked in ingress-nginx (IngressNightmare)",
    "proxy-busy-buffers-size": "not yet: set to proxy-buffer-size with proxy-buffer-size or proxy-buffers-number",
    "satisfy": "not yet (issue 15)",
    "service-upstream": "not yet (issue 15): endpoints are always the EndpointSlices' ready addresses",
    "session-cookie-change-on-failure": "not yet: the affinity cookie keeps its endpoint until it is gone",
    "session-cookie-conditional-samesite-none": "not yet: session-cookie-samesite applies to every browser",
    "ssl-ciphers": "not yet (issue 15): certificates are chosen live in one TLS context",
    "ssl-prefer-server-ciphers": "not yet (issue 15): certificates are chosen live in one TLS context",
    "ssl-passthrough": "not yet (issue 15): needs --enable-ssl-passthrough's stream front",
    "stream-snippet": "raw nginx in the stream block; ingress-nginx's snippets are off by default and this one has "
    "no typed replacement",
    "upstream-hash-by-subset": "not yet: upstream-hash-by hashes over every endpoint",
    "upstream-hash-by-subset-size": "not yet: upstream-hash-by hashes over every endpoint",
}


def served() -> frozenset[str]:
    """The annotations the code parses (ingress/annotations.py and the feature groups)."""
    return SUPPORTED | features.ANNOTATIONS


def status(name: str) -> tuple[str, str]:
    """("supported" | "partly supported" | "not supported", what differs or why)."""
    if name in served():
        return ("partly supported", DIFFERS[name]) if name in DIFFERS else ("supported", "")
    return "not supported", NOT_SUPPORTED[name]  # KeyError: a name without a status (the test says which)


def counts() -> dict[str, int]:
    out = {"supported": 0, "partly supported": 0, "not supported": 0}
    for name in INGRESS_NGINX:
        out[status(name)[0]] += 1
    return out


def markdown() -> str:
    """docs/annotations.md."""
    c = counts()
    lines = [
        "# ingress-nginx annotations in Portolan",
        "",
        "<!-- Generated by ingress/catalog.py (python -m ingress.catalog > docs/annotations.md); "
        "tests/ingress/test_catalog.py keeps it in step with the code. -->",
        "",
        f"Of ingress-nginx's {len(INGRESS_NGINX)} annotations (prefix `nginx.ingress.kubernetes.io/`), Portolan "
        f"serves {c['supported'] + c['partly supported']}: {c['supported']} as ingress-nginx does, "
        f"{c['partly supported']} with the difference given; {c['not supported']} are not supported (ignored with "
        "a note in the log; the Ingress is served without them). Traefik's ingress-nginx provider supports 86.",
        "",
        "Every value is parsed to a type or checked against an allow-list; a value that does not parse rejects "
        "its Ingress alone (log, Event, metric). Snippet annotations are ignored unless the ConfigMap sets "
        '`allow-snippet-annotations: "true"`.',
        "",
        "| annotation | status | differs from ingress-nginx / why not |",
        "|---|---|---|",
    ]
    for name in INGRESS_NGINX:
        state, text = status(name)
        lines.append(f"| `{name}` | {state} | {text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
