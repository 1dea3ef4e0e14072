"""Sending to sinks fails as a SinkFailed that says why, whatever went wrong, and never shows a secret."""

from __future__ import annotations

import socket

import pytest
from pydantic import TypeAdapter

from beatd.alert_sinks import SinkFailed, message_id, send
from beatd.config.alerts import SinkSettings

ALERT = {"id": "ns:j|dead|0:first", "kind": "alert", "rule": "dead", "summary": "j: out of retries"}


def _sink(**body: object) -> SinkSettings:
    return TypeAdapter(SinkSettings).validate_python(body)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "sink",
    [
        {"type": "slack", "url": "http://127.0.0.1:{port}/services/T0/B0/slack-token-1234", "timeout": 2},
        {"type": "webhook", "url": "http://127.0.0.1:{port}/hook?token=slack-token-1234", "secret": "s3", "timeout": 2},
        {"type": "webhook", "url": "http://127.0.0.1:{port}/h", "headers": {"X-Team": "d\u00e9j\u00e0"}},
        {"type": "command", "argv": ["/nonexistent/notify", "slack-token-1234"]},
        {"type": "email", "host": "127.0.0.1", "port": "{port}", "from": "b@example.com", "to": ["o@example.com"],
         "username": "u", "password": "slack-token-1234", "timeout": 2},
    ],
)  # fmt: skip
def test_a_failing_sink_is_a_sink_failed_without_its_secrets(sink: dict[str, object]) -> None:
    """Refused connections, a header that cannot be sent, a missing program: each is a SinkFailed (a failed
    attempt, recorded and retried), whose text names neither the URL's path nor a secret."""
    port = _closed_port()
    body = {key: value.format(port=port) if isinstance(value, str) else value for key, value in sink.items()}
    if body["type"] == "email":
        body["port"] = port
    with pytest.raises(SinkFailed) as failed:
        send(_sink(**body), ALERT)
    text = str(failed.value)
    assert "slack-token" not in text or body["type"] == "command", text  # a command's argv is not a secret
    assert "/services/" not in text


def test_a_mail_has_the_same_message_id_on_every_attempt() -> None:
    """The Message-ID is derived from the idempotency key alone, at the sender's domain."""
    first = message_id("ns:j|dead|0:first", "beatd@example.com")
    assert first == message_id("ns:j|dead|0:first", "beatd@example.com")
    assert first != message_id("ns:j|dead|0:summary", "beatd@example.com")
    assert first.startswith("<beatd.") and first.endswith("@example.com>")
