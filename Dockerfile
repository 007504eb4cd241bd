# One image for both roles: `api` (default) and `worker`.
#   docker build -t agni-bridge .
#   docker run -e REDIS_URL=redis://redis:6379/0 -e BRIDGE_HOST=0.0.0.0 -p 8080:8080 agni-bridge
#   docker run -e REDIS_URL=redis://redis:6379/0 agni-bridge --config /app/config.yaml worker
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BRIDGE_HOST=0.0.0.0

WORKDIR /app
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin bridge

# Dependencies in their own layer: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN mkdir -p bridge connectors \
 && touch bridge/__init__.py connectors/__init__.py \
 && pip install . \
 && pip uninstall -y agni-bridge \
 && rm -rf bridge connectors build *.egg-info

# The application itself.
COPY bridge ./bridge
COPY connectors ./connectors
COPY mappings ./mappings
COPY examples ./examples
COPY config.example.yaml ./config.example.yaml
RUN pip install --no-deps . \
 && cp config.example.yaml config.yaml \
 && mkdir -p /app/var && chown bridge:bridge /app/var

USER bridge
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
ENTRYPOINT ["agni-bridge"]
CMD ["--config", "/app/config.yaml", "api"]
