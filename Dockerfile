# postfix-tlspolicy, the same layout as scripts/build-image (which needs no registry): Debian 13
# with the Debian package (from scripts/build-deb), Unbound and uvloop, as user _tlspolicy.
#
#   scripts/build-deb            # dist/postfix-tlspolicy_<version>_all.deb
#   docker build -t tlspolicy .  # or: podman build -t tlspolicy .
#   docker run -d --name tlspolicy -p 127.0.0.1:8642:8642 -v tlspolicy-cache:/var/lib/tlspolicy tlspolicy
#
# The image runs its own validating Unbound on 127.0.0.1:5353 (contrib/container/); see
# contrib/compose.yaml for Unbound as a second service from the same image.
# Base pinned to an exact point-release tag; pin by digest in your registry for reproducible builds.
FROM debian:13.2-slim

ARG DEB=dist/postfix-tlspolicy_0.1.0-1_all.deb
COPY ${DEB} /tmp/postfix-tlspolicy.deb
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates unbound dns-root-data python3-uvloop /tmp/postfix-tlspolicy.deb \
    && rm -rf /var/lib/apt/lists/* /tmp/postfix-tlspolicy.deb
COPY contrib/container/tlspolicy.yml contrib/container/unbound.conf /etc/tlspolicy/
COPY contrib/container/entrypoint /usr/local/bin/tlspolicy-entrypoint
COPY contrib/container/healthcheck /usr/local/bin/tlspolicy-healthcheck

ENV PYTHONUNBUFFERED=1 STATE_DIRECTORY=/var/lib/tlspolicy
WORKDIR /var/lib/tlspolicy
VOLUME ["/var/lib/tlspolicy"]
USER _tlspolicy:_tlspolicy

# 8642: socketmap for Postfix; 8643: /metrics and /healthz (server.metrics_listen)
EXPOSE 8642 8643
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s \
    CMD ["/usr/local/bin/tlspolicy-healthcheck"]

# SIGTERM (docker stop) finishes in-flight answers; SIGHUP (docker kill -s HUP) reloads.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tlspolicy-entrypoint"]
CMD ["serve"]
