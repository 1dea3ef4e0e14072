"""Jobs whose stored data the beat cannot read: skipped and named (key and job), the rest go on.

A progress value that is not epoch ms, or a pause record that is not JSON, is an operator's or another
tool's mistake; crashing on it would stop every job, and systemd would restart the beat into the same crash.
The job is skipped instead, one error line names the key, the job and what was expected, and the beat looks
again every second: a repaired value is used, a deleted one starts the job from now.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from beatd.messages import from_ms
from beatd.store import Corrupt

__all__ = ["Unreadable"]

log = logging.getLogger("beatd.beat")


class Unreadable:
    """The jobs skipped for unreadable data (``jobs``: job -> why), and the problems already logged."""

    def __init__(self, progress_key: str) -> None:
        self.progress_key = progress_key
        self.jobs: dict[str, str] = {}
        self._reported: set[str] = set()

    def instant(self, job: str, value: int) -> datetime | None:
        """The progress instant of ``job``, or None (and the job skipped) when ``value`` is out of range."""
        try:
            return from_ms(value)
        except (OverflowError, ValueError):
            self.skip(Corrupt(self.progress_key, job, str(value), "epoch ms between years 1 and 9999"))
            return None

    def skip(self, problem: Corrupt) -> None:
        """Skip ``problem.job`` until its progress is readable."""
        if problem.job not in self.jobs:
            log.error("job %s skipped: %s; fix or delete the value (looked at again every second)", problem.job,
                      problem)  # fmt: skip
        self.jobs[problem.job] = str(problem)

    def paused(self, records: dict[str, Any], corrupt: Iterable[Corrupt]) -> set[str]:
        """The paused jobs: a job whose pause record is unreadable counts as paused (its entry is the pause)."""
        jobs = set(records)
        for problem in corrupt:
            jobs.add(problem.job)
            if (identity := f"paused\0{problem.job}\0{problem.value}") not in self._reported:
                self._reported.add(identity)
                log.error("job %s treated as paused: %s", problem.job, problem)
        return jobs

    def repaired(self, stored: dict[str, int], corrupt: Iterable[Corrupt]) -> tuple[dict[str, datetime], list[str]]:
        """Given a fresh read of the skipped jobs' progress, those readable again: (their progress, the jobs
        whose value was deleted); both stop being skipped."""
        still = {problem.job for problem in corrupt}
        progress: dict[str, datetime] = {}
        deleted: list[str] = []
        for job in list(self.jobs):
            if job in still:
                continue
            if job in stored:
                if (instant := self.instant(job, stored[job])) is None:
                    continue
                progress[job] = instant
            else:
                deleted.append(job)
            del self.jobs[job]
            log.info("job %s: its stored progress is readable again; scheduling it", job)
        return progress, deleted
