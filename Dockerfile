# One image for both roles: `api` (default) and `worker`.
#   docker build -t agni-bridge .
#   docker run -e REDIS_URL=redis://redis:6379/0 -e BRIDGE_HOST=0.0.0.0 -p 8080:8080 agni-bridge
#   docker run -e REDIS_URL=redis://redis:6379/0 agni-bridge worker --config /app/config.yaml
# Not built in CI (no Docker engine there): tests/unit/test_deploy.py lints it with hadolint and
# checks it against pyproject.toml, config.example.yaml and docker-compose.yml.

# Python minor version and Debian release pinned: a bare `3.11-slim` moves to the next Debian
# release under the same tag.
FROM python:3.11-slim-trixie

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BRIDGE_HOST=0.0.0.0

WORKDIR /app
# A fixed uid/gid, and USER by number: Kubernetes' runAsNonRoot can only verify a numeric user,
# and files the container writes on mounted volumes get a predictable owner.
RUN groupadd --gid 10001 bridge \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin bridge

# Dependencies in their own layer, rebuilt only when pyproject.toml changes: the [project]
# dependencies alone, so this layer needs none of the sources (whatever their package layout).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
    > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The application itself (README.md is the package's long description).
COPY README.md ./
COPY bridge ./bridge
COPY connectors ./connectors
COPY mappings ./mappings
COPY examples ./examples
COPY config.example.yaml ./config.example.yaml
RUN pip install --no-deps . \
 && cp config.example.yaml config.yaml \
 && mkdir -p /app/var && chown 10001:10001 /app/var

USER 10001:10001
EXPOSE 8080
# Exec form: no shell in between; an exception (refused, timeout, non-2xx) exits 1, "unhealthy".
HEALTHCHECK --interval=30s --timeout=3s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["agni-bridge"]
CMD ["api", "--config", "/app/config.yaml"]
