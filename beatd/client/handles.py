"""A triggered fire's handle: wait for its end, read its result (Celery's ``AsyncResult``)."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from beatd.client.waiting import FireWatch, wait_for_fires
from beatd.errors import RunFailed, UsageProblem
from beatd.records import RunRecord

if TYPE_CHECKING:
    from beatd.client.sync import Client

__all__ = ["FireHandle", "as_record", "outcome", "timed_out"]


@dataclasses.dataclass
class FireHandle:
    """One fire emitted by :meth:`Client.trigger`. ``fire_id`` names it for ``show`` and the CLI; dropping the
    handle loses nothing: the fire runs whether or not anyone waits."""

    client: Client = dataclasses.field(repr=False)
    fire_id: str
    job: str
    queue: str
    scheduled_at: str
    since_ms: int = dataclasses.field(repr=False)
    """Redis's clock (epoch ms, less the clock margin) when it was emitted: where a wait starts reading ends."""
    celery_task_id: str | None = None
    """The Celery task id of a ``celery`` job's fire (Celery runs it: it cannot be waited on here)."""

    def watch(self) -> FireWatch:
        """A watch of this fire's end."""
        return FireWatch(self.client.runs, self.job, self.queue, [self.fire_id], self.since_ms)

    def wait(self, timeout: float | None = None) -> RunRecord:
        """Block until the fire has ended (succeeded, dead, skipped, expired, cancelled; or dead-lettered at
        intake) and return its final RunRecord; TimeoutError after ``timeout`` seconds (None: no limit); the
        fire carries on, and a later ``wait`` still finds its end. Woken by the end's notification, not by
        polling."""
        self._refuse_celery()
        watch = self.watch()
        if not wait_for_fires(watch, lambda done, counts: None, timeout):
            raise timed_out(self.fire_id, timeout)
        return as_record(watch.ended[self.fire_id])

    def result(self, timeout: float | None = None) -> Any:
        """The job's return value (its JSON, cut at ``RESULT_LIMIT`` characters: then the record says
        ``result_truncated``) once the fire succeeded; RunFailed (error type, message, traceback) when it ended
        otherwise; TimeoutError as :meth:`wait`."""
        return outcome(self.wait(timeout), self.records())

    def records(self) -> list[RunRecord]:
        """Every kept attempt of the fire (its ``dead`` record last), so far."""
        return [RunRecord.from_json(text) for text in self.client.runs.fire_records(self.job, self.fire_id)]

    def _refuse_celery(self) -> None:
        if self.celery_task_id is not None:
            raise UsageProblem(f"{self.job} is a celery job, run by Celery's workers: wait on Celery's "
                               f"AsyncResult({self.celery_task_id!r})")  # fmt: skip


def timed_out(fire_id: str, timeout: float | None) -> TimeoutError:
    """The TimeoutError of a wait that ran out (the fire carries on)."""
    return TimeoutError(f"fire {fire_id} had not ended after {timeout:g}s; it carries on (wait again, or "
                        f"`beatd show {fire_id}`)")  # fmt: skip


def outcome(final: RunRecord, attempts: list[RunRecord]) -> Any:
    """The result of a fire whose final record is ``final`` (``attempts``: its records), or RunFailed."""
    if final.status == "succeeded":
        return final.result
    failed = next((record for record in reversed(attempts) if record.error), None)
    error = (failed.error if failed else final.error) or {}
    raise RunFailed(
        final.fire_id, final.status, error.get("type", ""), error.get("message", ""), error.get("traceback", ""),
        final.reason or "", final,
    )  # fmt: skip


def as_record(body: dict[str, Any]) -> RunRecord:
    """A RunRecord of a stored record's JSON object, or of the end a wait made up for a fire with no record
    (dead-lettered at intake: ``dead``; records pruned: ``unknown``), whose missing fields are empty."""
    if "run_id" in body and "scheduled_at" in body and "attempt" in body:
        return RunRecord.from_json(json.dumps(body))
    fields = {"run_id": "", "scheduled_at": "", "trigger": "manual", "attempt": 0, **body}
    return RunRecord.from_json(json.dumps(fields))
