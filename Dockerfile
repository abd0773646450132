# imgest as a container: slim, non-root, the bundled model inside the package, a health check.
# Build: docker build -t imgest:0.1.0 .   Run with PostgreSQL and Azurite: docker compose up
# (compose.yaml). See README.md (Container) and docs/deployment.md.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a venv with imgest and the postgres, azure and s3 extras (each includes the server),
# at the versions of the lock (constraints.txt), wheels only, no compiler
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
RUN python -m venv /opt/imgest \
    && /opt/imgest/bin/pip install --no-cache-dir --only-binary=:all: -c constraints.txt ".[postgres,azure,s3]" \
    && /opt/imgest/bin/imgest version

# --- runtime: the venv, the entrypoint and an unprivileged user; nothing else
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/imgest/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORT_DISABLE_TELEMETRY=1 \
    IMGEST_STORAGE_URL=/var/lib/imgest/blobs \
    IMGEST_CATALOG_URL=sqlite:////var/lib/imgest/catalog.db
RUN groupadd --system --gid 10001 imgest \
    && useradd --system --uid 10001 --gid imgest --home-dir /var/lib/imgest --shell /usr/sbin/nologin imgest \
    && mkdir -p /var/lib/imgest \
    && chown imgest:imgest /var/lib/imgest
COPY --from=build /opt/imgest /opt/imgest
COPY --chmod=0755 container/entrypoint.sh /usr/local/bin/imgest-entrypoint
USER 10001:10001
WORKDIR /var/lib/imgest
VOLUME ["/var/lib/imgest"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["imgest-entrypoint", "healthcheck"]
ENTRYPOINT ["imgest-entrypoint"]
CMD ["serve"]
