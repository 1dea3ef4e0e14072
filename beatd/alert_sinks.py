"""Sending one alert to one sink: webhook (JSON POST, HMAC-SHA256 signature), Slack-compatible incoming
webhook, email over SMTP (STARTTLS), command (argv, the alert JSON on stdin). Every send is bounded by the
sink's ``timeout``; any failure is a :class:`SinkFailed` saying why (never a secret).

Each payload carries its idempotency key (``id``); webhooks also get it as the ``Idempotency-Key`` header and
mail as its ``Message-ID``, so a receiver can drop the duplicate an at-least-once delivery may send.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import subprocess
from email.message import EmailMessage
from typing import Any

import httpx

from beatd.config.alerts import CommandSink, EmailSink, SinkSettings, SlackSink, WebhookSink
from beatd.errors import BeatdError

__all__ = ["SIGNATURE_HEADER", "SinkFailed", "message_id", "send", "signature", "text_of"]

SIGNATURE_HEADER = "X-Beatd-Signature"
"""``sha256=`` and the hex HMAC-SHA256 of the request body with the sink's secret."""


class SinkFailed(BeatdError):
    """A sink did not take an alert; the message says why."""


def signature(secret: str, body: bytes) -> str:
    """The signature header's value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def text_of(alert: dict[str, Any]) -> str:
    """One line for humans: ``[beatd] dead: signups: out of retries ...``."""
    prefix = "[beatd summary]" if alert.get("kind") == "summary" else "[beatd]"
    return f"{prefix} {alert.get('rule')}: {alert.get('summary') or alert.get('subject')}"


def message_id(key: str, sender: str) -> str:
    """The Message-ID of the mail of idempotency key ``key``: the same on every attempt (a receiver that
    threads or drops duplicates by it sees one message), at the sender's domain."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<beatd.{digest}@{sender.rpartition('@')[2] or 'beatd'}>"


def send(sink: SinkSettings, alert: dict[str, Any]) -> None:
    """Deliver ``alert`` to ``sink``; raises SinkFailed."""
    try:
        if isinstance(sink, WebhookSink):
            _webhook(sink, alert)
        elif isinstance(sink, SlackSink):
            _post(sink.url, json.dumps({"text": text_of(alert)}).encode(), {}, sink.timeout, alert)
        elif isinstance(sink, EmailSink):
            _email(sink, alert)
        elif isinstance(sink, CommandSink):
            _command(sink, alert)
    except SinkFailed:
        raise
    except Exception as error:  # any way a sink fails is a failed attempt: recorded, audited, retried
        raise SinkFailed(_redacted(f"{type(error).__name__}: {error}", sink)) from error


def _redacted(text: str, sink: SinkSettings) -> str:
    """``text`` without the sink's secrets: its URL past the host (a Slack webhook URL is a credential), its
    signing secret, its password."""
    secrets: list[str] = []
    if isinstance(sink, WebhookSink | SlackSink):
        url = httpx.URL(sink.url)
        text = text.replace(sink.url, f"{url.scheme}://{url.netloc.decode()}/...")
        secrets += [url.raw_path.decode()] if url.raw_path not in (b"", b"/") else []
    if isinstance(sink, WebhookSink) and sink.secret is not None:
        secrets.append(sink.secret.get_secret_value())
    if isinstance(sink, EmailSink) and sink.password is not None:
        secrets.append(sink.password.get_secret_value())
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _webhook(sink: WebhookSink, alert: dict[str, Any]) -> None:
    body = json.dumps(alert, separators=(",", ":")).encode()
    headers = dict(sink.headers)
    if sink.secret is not None:
        headers[SIGNATURE_HEADER] = signature(sink.secret.get_secret_value(), body)
    _post(sink.url, body, headers, sink.timeout, alert)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float, alert: dict[str, Any]) -> None:
    headers = {"Content-Type": "application/json", "Idempotency-Key": str(alert.get("id", "")), **headers}
    response = httpx.post(url, content=body, headers=headers, timeout=timeout)
    if response.status_code >= 300:
        raise SinkFailed(f"HTTP {response.status_code} from {httpx.URL(url).host}")


def _email(sink: EmailSink, alert: dict[str, Any]) -> None:
    message = EmailMessage()
    message["Subject"] = text_of(alert)[:200]
    message["From"] = sink.sender
    message["To"] = ", ".join(sink.to)
    message["Message-ID"] = message_id(str(alert.get("id", "")), sink.sender)
    message["X-Beatd-Idempotency-Key"] = str(alert.get("id", ""))
    message.set_content(text_of(alert) + "\n\n" + json.dumps(alert, indent=2))
    with smtplib.SMTP(sink.host, sink.port, timeout=sink.timeout) as smtp:
        if sink.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if sink.username is not None and sink.password is not None:
            smtp.login(sink.username, sink.password.get_secret_value())
        smtp.send_message(message)


def _command(sink: CommandSink, alert: dict[str, Any]) -> None:
    try:
        done = subprocess.run(
            list(sink.argv), input=json.dumps(alert).encode(), capture_output=True, timeout=sink.timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise SinkFailed(f"{sink.argv[0]} did not end within {sink.timeout:g}s") from error
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip()[-200:]
        raise SinkFailed(f"{sink.argv[0]} exited {done.returncode}" + (f": {tail}" if tail else ""))
