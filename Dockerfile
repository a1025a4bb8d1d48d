# syntax=docker/dockerfile:1.7
# acme-gateway image: the ACME server (`acme-gateway`, the entrypoint) and the operator
# (`acme-gateway-operator`, used by the Helm chart as the operator container's command).
#
#   docker build -t ghcr.io/acme-gateway/acme-gateway:0.1.0 .
#
# The builder installs exactly the locked dependencies (uv.lock, no dev group) and the
# project itself (non-editable) into /app/.venv; the final stage copies only that venv onto
# the same Python base, so the venv's interpreter symlink stays valid.
#
# Without a registry (this project's tests, air-gapped builds), PYTHON_IMAGE can be any
# Debian-like image with Python 3.11 at /usr/local/bin/python3.11 and the venv module:
# tools/image/build.sh makes one with mmdebstrap and builds this same file with
# `buildah bud --isolation chroot`. uv comes from PyPI (pinned), not from an image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.13.9
# A CA bundle for downloads behind a TLS-inspecting proxy, mounted into the build at this
# path (e.g. `buildah bud -v host.pem:/etc/build-ca.pem:ro`); empty: the default trust.
ARG BUILD_CA_BUNDLE=
RUN if [ -n "$BUILD_CA_BUNDLE" ]; then export PIP_CERT="$BUILD_CA_BUNDLE"; fi \
 && python3.11 -m venv /opt/uv \
 && /opt/uv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check \
        "uv==${UV_VERSION}" \
 && ln -s /opt/uv/bin/uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first: this layer is reused while only the code changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    if [ -n "$BUILD_CA_BUNDLE" ]; then export SSL_CERT_FILE="$BUILD_CA_BUNDLE"; fi \
 && uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY acme_server ./acme_server
COPY operator ./operator
RUN --mount=type=cache,target=/root/.cache/uv \
    if [ -n "$BUILD_CA_BUNDLE" ]; then export SSL_CERT_FILE="$BUILD_CA_BUNDLE"; fi \
 && uv sync --frozen --no-dev --no-editable \
 && /app/.venv/bin/acme-gateway --help >/dev/null \
 && /app/.venv/bin/acme-gateway-operator --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="acme-gateway" \
      org.opencontainers.image.description="Kubernetes-native private ACME CA (RFC 8555) and operator" \
      org.opencontainers.image.source="https://github.com/acme-gateway/acme-gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed non-root uid/gid matching the chart's securityContext (runAsUser/fsGroup 10001).
RUN groupadd --system --gid 10001 acme-gateway \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /data \
        --shell /usr/sbin/nologin acme-gateway \
 && mkdir -p /data \
 && chown 10001:10001 /data \
 && chmod 0750 /data
COPY --from=builder /app/.venv /app/.venv
# Bytecode was compiled in the builder and nothing is written outside /data and /tmp, so the
# root filesystem can be mounted read-only (the chart mounts a PVC or emptyDir on /data and
# an emptyDir on /tmp).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    ACME_GATEWAY_DATA_DIR=/data \
    ACME_GATEWAY_LISTEN=0.0.0.0:14000
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 14000
ENTRYPOINT ["acme-gateway"]
CMD ["serve"]
