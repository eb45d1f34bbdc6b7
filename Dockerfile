# syntax=docker/dockerfile:1
# WavesQuant agent image: one image for every agent, one agent per container (`wq agent run NAME`); see
# docker-compose.yml. Build: `docker build -t wavesquant:0.1.0 .`
#
# Two stages: the builder makes a virtualenv from the pinned runtime lock (requirements.lock, not the dev lock)
# plus the package itself (--no-deps, so nothing unpinned sneaks in); the runtime stage gets only that venv and
# the config, and runs as an unprivileged user. Every runtime dependency ships manylinux wheels for x86_64 and
# aarch64, so --only-binary keeps compilers out of both stages (a dependency without a wheel fails the build
# instead of silently compiling).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
COPY requirements.lock ./
RUN pip install --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-deps . \
 && pip check \
 && pip uninstall -y pip setuptools

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="wavesquant" \
      org.opencontainers.image.description="WavesQuant multi-agent crypto trading daemon (one agent per container)" \
      org.opencontainers.image.version="0.1.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WQ_LOGGING__JSON_OUTPUT=true
RUN groupadd --system --gid 10001 wq \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin wq
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY config ./config
# var/ is the only place the app writes (e.g. `wq journal sync`); code and config stay read-only for the user.
RUN mkdir -p /app/var && chown 10001:10001 /app/var
USER 10001:10001
# WQ_AGENT is set per service (docker-compose.yml): healthy while that agent's heartbeat in Redis is fresh.
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD wq agent health "$WQ_AGENT" --config /app/config/docker.yaml || exit 1
ENTRYPOINT ["wq"]
CMD ["--help"]
