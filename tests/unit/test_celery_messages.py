"""The Celery task message a celery job's fire becomes: task protocol 2, JSON, kombu's Redis envelope."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from beatd.celery_messages import CELERY_TASK_NAMESPACE, build_task_message, celery_task_id
from beatd.config import JobSpec, load_config
from beatd.emission import celery_write, plan_writes
from beatd.errors import ConfigError
from beatd.keys import Keys, celery_queue
from beatd.messages import Message, fire_id, format_utc
from beatd.planner import Plan, Step
from beatd.records import RunRecord
from beatd.store.beat import read_last
from tests.conftest import WriteFiles

FIRE = "report@2026-12-01T08:00:00Z"
EMITTED = datetime(2026, 12, 1, 8, 0, 0, 250000, tzinfo=UTC)


def _spec(write_files: WriteFiles, options: str = "{}") -> JobSpec:
    path: Path = write_files(
        {
            "beatd.yaml": "redis: {url: 'redis://127.0.0.1:6379/0'}\ncelery: {broker_url: 'redis://127.0.0.1:6379/2'}\n"
            f"jobs:\n  report:\n    celery: proj.tasks.send_report\n    every: 1h\n    args: [1, 'a']\n"
            f"    kwargs: {{day: monday}}\n    options: {options}\n"
        }
    )
    return load_config(path, {}).jobs["report"]


def test_task_id_is_uuid5_of_namespace_and_fire() -> None:
    """The task id is a uuid5 of the fixed beatd namespace and "ns/fire id": stable, distinct per deployment."""
    assert celery_task_id("beatd", FIRE) == str(uuid.uuid5(CELERY_TASK_NAMESPACE, f"beatd/{FIRE}"))
    assert celery_task_id("beatd", FIRE) == celery_task_id("beatd", FIRE)
    assert celery_task_id("staging", FIRE) != celery_task_id("beatd", FIRE)


def test_protocol_2_headers_body_and_properties(write_files: WriteFiles) -> None:
    """Headers name the task and its id, args and kwargs travel base64-encoded JSON, delivery_info names the
    queue; a fire's message is the same whenever it is built, but for its delivery tag."""
    spec = _spec(write_files, "{headers: {trace: t-1}, time_limit: 90s, soft_time_limit: 1m}")
    message = build_task_message(
        spec, namespace="beatd", fire_id=FIRE, scheduled_at="2026-12-01T08:00:00Z", trigger="schedule",
        emitted_at=EMITTED,
    )  # fmt: skip
    envelope = json.loads(message.envelope)
    headers, properties = envelope["headers"], envelope["properties"]
    assert (message.queue_key, message.queue, message.task_id) == ("celery", "celery", celery_task_id("beatd", FIRE))
    assert json.loads(base64.b64decode(envelope["body"])) == [
        [1, "a"], {"day": "monday"}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    ]  # fmt: skip
    assert (envelope["content-type"], envelope["content-encoding"]) == ("application/json", "utf-8")
    assert headers["lang"] == "py" and headers["task"] == "proj.tasks.send_report"
    assert headers["id"] == headers["root_id"] == properties["correlation_id"] == message.task_id
    assert headers["parent_id"] is None and headers["retries"] == 0 and headers["eta"] is None
    assert (headers["argsrepr"], headers["kwargsrepr"]) == ("[1, 'a']", "{'day': 'monday'}")
    assert headers["timelimit"] == [90, 60] and headers["expires"] is None
    assert headers["trace"] == "t-1"
    assert (headers["beatd_fire_id"], headers["beatd_trigger"]) == (FIRE, "schedule")
    assert properties["delivery_info"] == {"exchange": "", "routing_key": "celery"}
    assert properties["body_encoding"] == "base64" and properties["delivery_mode"] == 2
    assert properties["priority"] == 0 and "expiration" not in properties
    again = build_task_message(
        spec, namespace="beatd", fire_id=FIRE, scheduled_at="2026-12-01T08:00:00Z", trigger="schedule",
        emitted_at=EMITTED,
    )  # fmt: skip
    untagged = [json.loads(built.envelope) for built in (message, again)]
    for envelope in untagged:
        del envelope["properties"]["delivery_tag"]
    assert untagged[0] == untagged[1] and again.task_id == message.task_id


def test_priority_queue_routing_and_expiry(write_files: WriteFiles) -> None:
    """A priority goes to kombu's step list; the queue is delivery_info's routing key (default exchange: where
    kombu restores an unacked message); expires counts from the emission and sets the AMQP expiration in ms."""
    spec = _spec(write_files, "{queue: reports, routing_key: reports, priority: 7, expires: 90s}")
    message = build_task_message(
        spec, namespace="beatd", fire_id=FIRE, scheduled_at="2026-12-01T08:00:00Z", trigger="catchup",
        emitted_at=EMITTED,
    )  # fmt: skip
    envelope = json.loads(message.envelope)
    assert message.queue_key == celery_queue("reports", 7) == "reports\x06\x166"
    assert envelope["properties"]["delivery_info"] == {"exchange": "", "routing_key": "reports"}
    assert envelope["properties"]["priority"] == 7 and envelope["properties"]["expiration"] == "90000"
    assert envelope["headers"]["expires"] == "2026-12-01T08:01:30.250000+00:00"


def test_each_message_has_its_own_delivery_tag(write_files: WriteFiles) -> None:
    """The same fire built twice keeps its task id but never shares a delivery tag (kombu keys the unacked
    hash and QoS by it)."""
    spec = _spec(write_files)
    one, two = (
        json.loads(
            build_task_message(
                spec, namespace="beatd", fire_id=FIRE, scheduled_at="2026-12-01T08:00:00Z", trigger="manual",
                emitted_at=EMITTED,
            ).envelope
        )
        for _ in range(2)
    )  # fmt: skip
    assert one["headers"]["id"] == two["headers"]["id"]
    assert one["properties"]["delivery_tag"] != two["properties"]["delivery_tag"]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ("{queue: reports, routing_key: reports.daily}", "options.routing_key: with the default exchange"),
        ("{exchange: tasks}", "options.exchange: beatd pushes straight onto options.queue"),
    ],
)
def test_routing_beatd_would_not_honour_is_refused(write_files: WriteFiles, options: str, fragment: str) -> None:
    """A routing key other than the queue, or an exchange, is a located error: the message would be restored
    to (or routed through) a list beatd does not push to."""
    with pytest.raises(ConfigError) as caught:
        _spec(write_files, options)
    (problem,) = caught.value.problems
    assert fragment in str(problem), problem


def test_celery_steps_become_fenced_pushes_with_sent_records(write_files: WriteFiles) -> None:
    """The beat plans a celery fire as one `celery` write: the envelope for the broker's database and the
    `sent` record carrying the task id; nothing for beatd's own queue streams."""
    spec = _spec(write_files)
    step = Step("emit", datetime(2026, 12, 1, 8, tzinfo=UTC), "schedule")
    plan = Plan(steps=(step,), progress=step.scheduled_at, next_due=None)
    config_settings = load_config(write_files({"x.yaml": "celery: {broker_url: 'redis://127.0.0.1/2'}\n"}), {})
    (pending,) = plan_writes(spec, plan, EMITTED, Keys("ns"), None, config_settings.settings.celery)
    write = pending.write
    assert (write.kind, write.celery_db, write.celery_queue_key, write.queue_key) == ("celery", 2, "celery", "")
    record = RunRecord.from_json(write.record)
    assert record.status == "sent" and record.fire_id == FIRE and record.attempt == 0
    assert record.extra == {
        "task_id": celery_task_id("ns", FIRE),
        "task": "proj.tasks.send_report",
        "celery_queue": "celery",
    }
    assert json.loads(write.celery_message)["headers"]["id"] == record.extra["task_id"]
    assert read_last(spec.name, write.last_text)["fire_id"] == FIRE  # what `{ns}:last` keeps of it


def test_a_jobs_expires_is_celerys_expires_from_the_scheduled_instant(write_files: WriteFiles) -> None:
    """The job's own expires (a start deadline, as for any job) becomes the message's expires: the scheduled
    instant plus expires (a caught-up fire already past it is revoked by the Celery worker), the request instant
    plus expires for a manual fire; the AMQP expiration is what is left of it at emission."""
    path = write_files(
        {
            "beatd.yaml": "redis: {url: 'redis://127.0.0.1:6379/0'}\ncelery: {broker_url: 'redis://127.0.0.1/2'}\n"
            "jobs:\n  report:\n    celery: proj.tasks.send_report\n    every: 1h\n    expires: 10m\n"
        }
    )
    config = load_config(path, {})
    spec = config.jobs["report"]
    steps = (
        Step("emit", datetime(2026, 12, 1, 8, tzinfo=UTC), "schedule"),
        Step("emit", datetime(2026, 12, 1, 7, tzinfo=UTC), "catchup"),
    )
    headers, properties = [], []
    for step in steps:
        plan = Plan(steps=(step,), progress=step.scheduled_at, next_due=None)
        (pending,) = plan_writes(spec, plan, EMITTED, Keys("ns"), None, config.settings.celery)
        envelope = json.loads(pending.write.celery_message)
        headers.append(envelope["headers"]["expires"])
        properties.append(envelope["properties"]["expiration"])
    assert headers == ["2026-12-01T08:10:00+00:00", "2026-12-01T07:10:00+00:00"]
    assert properties == [str(10 * 60 * 1000 - 250), "0"]
    at = datetime(2026, 11, 30, 6, tzinfo=UTC)  # a re-run of an old instant, requested now
    manual = Message(
        fire_id("report", at, "manual", EMITTED), "report", format_utc(at), format_utc(EMITTED), "manual", spec.digest
    )
    assert config.settings.celery is not None
    sent = celery_write(spec, manual.fire_id, at, "manual", manual.to_json(), EMITTED, Keys("ns"),
                        config.settings.celery)  # fmt: skip
    assert json.loads(sent.write.celery_message)["headers"]["expires"] == "2026-12-01T08:10:00.250000+00:00"
