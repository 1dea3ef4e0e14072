"""A short chaos soak (bench/chaos.py, about a minute, fixed seed): real Redis, 3 beats, 2 workers, real kills.

The soak runs once for the module; each test checks one of its counts. The soak's exit code is 0 only when
every count holds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

DURATION = 45  # seconds of faults; with start, settle and counting the soak takes about 70 s
SEED = 113  # its first faults: redis-term, worker-kill, redis-term, worker-kill, leader-stop, beat-term, ...
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The soak's JSON summary, with its exit code under ``exit_code`` and its output under ``output``."""
    out = tmp_path_factory.mktemp("chaos") / "chaos.json"
    command = [sys.executable, str(REPO / "bench" / "chaos.py"), "--duration", str(DURATION), "--seed", str(SEED)]
    command += ["--fault-min", "3", "--fault-max", "6", "--settle-timeout", "45", "--json-out", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=220, check=False)
    if not Path(out).exists():
        pytest.fail(
            f"the soak wrote no summary (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    summary: dict[str, Any] = json.loads(Path(out).read_text())
    summary["exit_code"], summary["output"] = done.returncode, done.stdout
    return summary


def table(soak: dict[str, Any]) -> str:
    """The soak's printed table and notes, for a failure message."""
    return str(soak["output"]).split("\n{", 1)[0][-4000:]


def test_soak_injected_faults_and_counted(soak: dict[str, Any]) -> None:
    """The soak injected several faults, drained, and counted scheduled instants of every job."""
    assert sum(soak["faults"].values()) >= 5, table(soak)
    assert soak["totals"]["instants"] > 100, table(soak)
    assert soak["notes"] == [], table(soak)
    assert soak["exit_code"] in (0, 1), table(soak)


def test_no_fire_emitted_twice(soak: dict[str, Any]) -> None:
    """No scheduled instant was emitted twice, whatever was killed or stopped."""
    assert soak["totals"]["emitted_twice"] == 0, table(soak)


def test_no_fire_silently_lost(soak: dict[str, Any]) -> None:
    """Every scheduled instant of the window was emitted or recorded missed."""
    assert soak["totals"]["lost"] == 0, table(soak)
    assert soak["totals"]["off_schedule"] == 0, table(soak)


def test_no_run_stuck_or_unrun(soak: dict[str, Any]) -> None:
    """After the settle no record is still running, every emitted fire has a record and nothing is pending."""
    totals = soak["totals"]
    assert (totals["stuck"], totals["unrun"], totals["pending"]) == (0, 0, 0), table(soak)


def test_daemons_exit_only_when_told(soak: dict[str, Any]) -> None:
    """No beat or worker exited on its own, and each SIGTERM ended its daemon with exit code 0."""
    assert soak["unexpected"] == [], table(soak)


def test_no_job_process_outlives_its_killed_worker(soak: dict[str, Any]) -> None:
    """One second after a worker's kill -9, none of its job processes still runs."""
    assert soak["totals"]["orphans"] == 0, table(soak)
    assert soak["exit_code"] == 0, table(soak)  # every count held
