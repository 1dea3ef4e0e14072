#!/usr/bin/env bash
# Peer environment of the worker benchmarks (RQ and Celery). Usage from the repo root:
#     bash bench/workers/setup.sh
# Creates bench/workers/.venv (gitignored) with the pinned versions measured in RESULTS.md.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet "rq==2.12.0" "celery[redis]==5.7.0" "kombu==5.7.0" "redis==6.4.0" "hiredis==3.5.0"
"$VENV/bin/python" -c "from importlib.metadata import version as v; print('rq', v('rq'), 'celery', v('celery'))"
