# Two images from one file:
#   docker build -t portolan .                           portolan dns (the default, last stage)
#   docker build --target ingress -t portolan-ingress .  portolan ingress, with Debian's nginx and
#                                                        its Lua module (the live data plane)
# Both run as non-root users that may still bind ports below 1024.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY portolan portolan
COPY corefile corefile
COPY dnsserver dnsserver
COPY dnsplugins dnsplugins
COPY kubewatch kubewatch
COPY ingress ingress
COPY templates templates
RUN python -m venv /opt/portolan && /opt/portolan/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm AS ingress
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light libnginx-mod-stream libcap2-bin \
       libnginx-mod-http-lua lua-resty-core lua-resty-lrucache libnginx-mod-stream-js \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/portolan /opt/portolan
ENV PATH=/opt/portolan/bin:$PATH
# nginx binds 80/443 itself, as the unprivileged user: give the binary the capability, not the user.
RUN setcap cap_net_bind_service=+ep /usr/sbin/nginx \
    && useradd --system --uid 101 --no-create-home --shell /usr/sbin/nologin portolan-ingress
USER 101:101
ENTRYPOINT ["portolan", "ingress"]

FROM python:3.11-slim-bookworm AS dns
RUN apt-get update && apt-get install -y --no-install-recommends libcap2-bin \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/portolan /opt/portolan
ENV PATH=/opt/portolan/bin:$PATH
# Port 53 needs CAP_NET_BIND_SERVICE: grant it to the interpreter file so the unprivileged user keeps
# it (the Deployment also adds the capability to the container).
RUN setcap cap_net_bind_service=+ep "$(readlink -f /opt/portolan/bin/python)" \
    && useradd --system --uid 65532 --no-create-home --shell /usr/sbin/nologin portolan
USER 65532:65532
WORKDIR /
EXPOSE 53/udp 53/tcp 9153/tcp 8080/tcp 8181/tcp
ENTRYPOINT ["portolan", "dns"]
CMD ["-conf", "/etc/coredns/Corefile"]
