"""The burst path of the leader's writes builds the same writes as the general one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from beatd.config import load_config
from beatd.emission import InstantTexts, TickWriter, message_template, plan_writes
from beatd.keys import Keys
from beatd.planner import Plan, Step
from beatd.signing import Signer

NOW = datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_tick_writer_builds_the_writes_plan_writes_builds(tmp_path: Path) -> None:
    """TickWriter.add appends, for a plan of emits, the writes plan_writes makes (message, signature, last
    emission, every unused field at its default) and the lag and trigger counted with each."""
    path = tmp_path / "beatd.yaml"
    jobs = "jobs:\n  a: {command: [x], cron: '* * * * *'}\n"
    path.write_text(f"redis: {{url: 'redis://127.0.0.1:1/0'}}\nnamespace: t\n{jobs}")
    spec = load_config(path, {}).jobs["a"]
    keys, signer = Keys("t"), Signer("secret")
    at = NOW - timedelta(seconds=1)
    steps = (Step("emit", at - timedelta(minutes=1), "catchup"), Step("emit", at))
    plan = Plan(steps=steps, progress=at, next_due=None)
    expected = plan_writes(spec, plan, NOW, keys, signer, template=message_template(spec))
    writer = TickWriter(NOW, keys, signer, None, outbox=False, instants=InstantTexts())
    pending = [expected[-1]]  # the writes of the jobs before: kept, the new ones after them
    writer.add(pending, spec, plan, message_template(spec))
    assert pending == [expected[-1], *expected]
    first, second = (item.write for item in expected)
    assert [first.last_text, second.last_text] == [
        f"{first.scheduled_ms} catchup {spec.digest}", f"{second.scheduled_ms} schedule {spec.digest}",
    ]  # fmt: skip
