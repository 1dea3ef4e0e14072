#!/usr/bin/env bash
# Peer benchmark environment for RedBeat (celery-redbeat).
#
# Usage (from the repo root):
#     bash bench/peers/setup.sh
#
# Creates bench/.peer-venv (gitignored via bench/.gitignore) and installs the
# pinned versions of celery (+kombu[redis]), celery-redbeat and redis that the peer
# benchmark scripts (bench/peers/redbeat_*.py) use, then prints the installed
# versions. Re-running is idempotent.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$(cd "$HERE/.." && pwd)/.peer-venv"
PY="${PYTHON:-python3}"

# Versions that installed and were measured (see bench/peers/RESULTS.md).
CELERY_VERSION="${CELERY_VERSION:-5.6.3}"
REDBEAT_VERSION="${REDBEAT_VERSION:-2.4.2}"
REDIS_PY_VERSION="${REDIS_PY_VERSION:-6.4.0}"
KOMBU_VERSION="${KOMBU_VERSION:-5.7.0}"
PACKAGING_VERSION="${PACKAGING_VERSION:-26.3}"  # kombu[redis] needs it

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet \
    "celery[redis]==${CELERY_VERSION}" \
    "kombu==${KOMBU_VERSION}" \
    "packaging==${PACKAGING_VERSION}" \
    "celery-redbeat==${REDBEAT_VERSION}" \
    "redis==${REDIS_PY_VERSION}"

echo "peer venv: $VENV"
"$VENV/bin/python" - <<'PY'
import sys
from importlib.metadata import version
print("python", sys.version.split()[0])
for name in ("celery", "celery-redbeat", "redis", "kombu", "packaging"):
    print(name, version(name))
PY
if command -v redis-server >/dev/null; then
    redis-server --version
else
    echo "WARNING: redis-server not on PATH (needed by the benchmarks)" >&2
fi
