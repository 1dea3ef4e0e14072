# beatd image: the `beatd` console script on python:3.11-slim, run as an unprivileged user (uid 10001).
#
#   docker build -t beatd:0.1.0 .                # from the repository root (the build context)
#   docker run --rm -e BEATD_REDIS_URL=redis://host:6379/0 -v "$PWD/config:/app/config:ro" beatd:0.1.0
#   docker run ... beatd:0.1.0 worker --metrics-host 0.0.0.0 --metrics-port 9102
#
# The config is found as on any host: -c FILE, else $BEATD_CONFIG, else ./config/beatd.yaml (that is
# /app/config/beatd.yaml: mount the repository's config/ there and its `pythonpath: [..]` is /app), else
# /etc/beatd/beatd.yaml (where deploy/kubernetes mounts its ConfigMap). Secrets come from the environment
# through ${VAR} in the YAML. /app/jobs holds the example job code; your own image adds its package beside it
# (FROM beatd, COPY mypackage /app/mypackage) or installs it into /opt/beatd with /opt/beatd/bin/pip.
# SIGTERM drains a worker for worker.grace (30 s): give `docker stop -t 60` (or --stop-timeout 60).

ARG PYTHON_VERSION=3.11

# --- build: install beatd (and the extras named in EXTRAS) into a virtualenv at /opt/beatd -------------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/beatd
WORKDIR /src
# pyproject.toml names README.md as the long description, so the build needs it.
COPY pyproject.toml README.md ./
COPY beatd ./beatd
# "jobs" brings what the example jobs in /app/jobs import (SQLAlchemy, psycopg); --build-arg EXTRAS= for none.
ARG EXTRAS=jobs
RUN /opt/beatd/bin/pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"

# --- runtime: the virtualenv, the example job code, an unprivileged user --------------------------------------
FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="beatd" \
      org.opencontainers.image.description="Scheduler-first periodic job daemon: YAML jobs, one elected beat, exactly-once fires into Redis" \
      org.opencontainers.image.licenses="MIT"
# A numeric uid, so that Kubernetes' runAsNonRoot can check it without looking the name up.
RUN groupadd --system --gid 10001 beatd \
    && useradd --system --uid 10001 --gid beatd --home-dir /home/beatd --create-home --shell /usr/sbin/nologin beatd
COPY --from=build /opt/beatd /opt/beatd
# Job code stays owned by root: the daemon can import it but not change it.
COPY jobs /app/jobs
ENV PATH=/opt/beatd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER 10001:10001
# /metrics, /healthz and /readyz (beatd/metrics.py) when the command has --metrics-port 9102, as CMD has.
EXPOSE 9102
# slim has no curl: urllib fails (exit 1) on a refused connection, a timeout or a 503 from /healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9102/healthz', timeout=3)"]
ENTRYPOINT ["beatd"]
CMD ["beat", "--metrics-host", "0.0.0.0", "--metrics-port", "9102"]
