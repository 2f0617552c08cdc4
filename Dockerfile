# postfix-tlspolicy: Postfix TLS policy socketmap server (DANE first, then MTA-STS).
#
#   docker build -t tlspolicy .
#   docker run -d --name tlspolicy -p 127.0.0.1:8642:8642 -v tlspolicy-cache:/var/lib/tlspolicy \
#       -v /etc/tlspolicy/tlspolicy.yml:/etc/tlspolicy/tlspolicy.yml:ro tlspolicy
#
# The baked-in configuration is contrib/docker-tlspolicy.yml. DANE needs a validating resolver
# reachable from the container (see that file and contrib/unbound-tlspolicy.conf).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . \
    && rm -rf /src

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/tlspolicy \
        --shell /usr/sbin/nologin tlspolicy \
    && install -d -o tlspolicy -g tlspolicy -m 0750 /var/lib/tlspolicy \
    && install -d -m 0755 /etc/tlspolicy
COPY contrib/docker-tlspolicy.yml /etc/tlspolicy/tlspolicy.yml

WORKDIR /var/lib/tlspolicy
VOLUME ["/var/lib/tlspolicy"]
USER tlspolicy

# 8642: socketmap for Postfix; 8643: /metrics and /healthz (server.metrics_listen)
EXPOSE 8642 8643
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8643/healthz', timeout=8)"]

# SIGTERM (docker stop) finishes in-flight answers; SIGHUP (docker kill -s HUP) reloads.
STOPSIGNAL SIGTERM
CMD ["tlspolicy", "serve", "-c", "/etc/tlspolicy/tlspolicy.yml"]
