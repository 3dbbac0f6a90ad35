# portolan dns, running as a non-root user that may still bind port 53.
FROM python:3.11-slim-bookworm AS base
RUN apt-get update && apt-get install -y --no-install-recommends libcap2-bin \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY portolan portolan
COPY corefile corefile
COPY dnsserver dnsserver
COPY dnsplugins dnsplugins
COPY kubewatch kubewatch
RUN pip install --no-cache-dir . && rm -rf /src
# Binding ports below 1024 needs CAP_NET_BIND_SERVICE: grant it to the interpreter file so an
# unprivileged user keeps it (the Deployment also adds the capability to the container).
RUN setcap cap_net_bind_service=+ep "$(readlink -f "$(command -v python3)")"
RUN useradd --system --uid 65532 --no-create-home --shell /usr/sbin/nologin portolan
USER 65532:65532
WORKDIR /
EXPOSE 53/udp 53/tcp 9153/tcp 8080/tcp 8181/tcp
ENTRYPOINT ["portolan", "dns"]
CMD ["-conf", "/etc/coredns/Corefile"]
