"""A job's message template writes the same characters as encoding the Message, for any name and arguments."""

from __future__ import annotations

from typing import Any

import pytest

from beatd.messages import Message, MessageTemplate


@pytest.mark.parametrize(
    ("job", "args", "kwargs"),
    [
        ("daily_signups", [], {}),
        ("a.b-c", [1, 2.5, None, True], {"when": "09:00", "nested": {"list": [1, "x"]}}),
        ('quo"te\\back', ["é", "\n\t\x1e\x1f", "😀"], {"ключ": "значение"}),
    ],
)
@pytest.mark.parametrize("emitted_at", ["2026-11-21T16:05:00Z", "2026-11-21T16:05:00.123Z"])
@pytest.mark.parametrize("trigger", ["schedule", "catchup"])
def test_the_template_fills_in_as_the_message_encodes(
    job: str, args: list[Any], kwargs: dict[str, Any], emitted_at: str, trigger: str
) -> None:
    """fill() gives exactly Message.to_json() of the same fire (so signatures and fire ids are unchanged)."""
    scheduled = "2026-11-21T16:05:00Z"
    message = Message(
        fire_id=f"{job}@{scheduled}", job=job, scheduled_at=scheduled, emitted_at=emitted_at,
        trigger=trigger,  # type: ignore[arg-type]
        config_digest="0123456789abcdef", args=args, kwargs=kwargs,
    )  # fmt: skip
    template = MessageTemplate(job, "0123456789abcdef", args, kwargs)
    assert template.fill(scheduled, emitted_at, trigger) == message.to_json()
    assert Message.from_json(template.fill(scheduled, emitted_at, trigger)) == message
