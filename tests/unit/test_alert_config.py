"""The alerts: config: routing merges, and bad input as located problems (exit 2 from beatd check)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from beatd.config import load_config
from beatd.errors import ConfigError
from tests.conftest import REPO

SINKS = """alerts:
  sinks:
    mail: {type: email, host: smtp.example.com, from: beatd@example.com, to: [ops@example.com]}
    chat: {type: slack, url: 'https://hooks.slack.example/T0/B0/x'}
"""
JOB = "jobs:\n  signups:\n    call: jobs.stats:daily_signups\n    cron: '0 0 * * *'\n    tags: [nightly]\n"

# (id, config text, expected fragment of the problem, line:col)
BAD: list[tuple[str, str, str]] = [
    ("unknown-sink", SINKS + "  rules:\n    - {on: dead, sinks: [pager]}\n" + JOB,
     ":6:26: alerts.rules[0].sinks[0]: unknown sink 'pager': expected one of alerts.sinks (chat, mail)"),
    ("malformed-url", "alerts:\n  sinks:\n    hook: {type: webhook, url: 'ftp:/nowhere'}\n" + JOB,
     ":3:11: alerts.sinks.hook.webhook.url: invalid URL 'ftp:/nowhere': expected http:// or https:// and a host"),
    ("rule-on-unknown-job", SINKS + "  rules:\n    - {on: dead, sinks: [mail], jobs: [signup]}\n" + JOB,
     ":6:40: alerts.rules[0].jobs[0]: unknown job 'signup'"),
    ("missing-env-secret", "alerts:\n  sinks:\n    hook: {type: webhook, url: 'https://x.example/h', secret: "
     "'${HOOK_SECRET}'}\n" + JOB, ":3:63: alerts.sinks.hook.secret: environment variable HOOK_SECRET is not set"),
    ("job-rule-unknown-sink", SINKS + JOB + "    alerts:\n      - {on: deadline, after: 30m, sinks: [pagr]}\n",
     ":11:44: jobs.signups.alerts[0].sinks[0]: unknown sink 'pagr'"),
    ("deadline-without-after", SINKS + JOB + "    alerts:\n      - {on: deadline, sinks: [chat]}\n",
     ":11:9: jobs.signups.alerts[0]: a deadline rule needs after"),
    ("unknown-sink-type", "alerts:\n  sinks:\n    x: {type: pager, url: 'https://x.example'}\n" + JOB,
     ":3:8: alerts.sinks.x: Input tag 'pager' found using 'type' does not match"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_alert_config_is_a_located_problem(tmp_path: Path, text: str, expected: str) -> None:
    """Each mistake in alerts: is reported with its file, line, column and key path."""
    path = tmp_path / "beatd.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, {})
    assert expected in str(raised.value), str(raised.value)


CONTRACT = ("unknown-sink", "malformed-url", "rule-on-unknown-job", "missing-env-secret")


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in BAD if case[0] in CONTRACT], ids=CONTRACT)
def test_beatd_check_exits_2_on_each_alert_mistake_without_a_traceback(
    tmp_path: Path, text: str, expected: str
) -> None:
    """`beatd check` on an unknown sink, a malformed URL, a rule on an unknown job or a missing environment
    secret exits 2 with the located message, no traceback."""
    path = tmp_path / "beatd.yaml"
    path.write_text(text)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("BEATD_")}
    environment.pop("HOOK_SECRET", None)
    result = subprocess.run([sys.executable, "-m", "beatd", "check", "-c", str(path)], capture_output=True,
                            text=True, cwd=REPO, env=environment, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}{expected}" in result.stderr, result.stderr


# (id, top-level rules, the job's own alerts:, tags, expected effective rules as "on:sinks")
MERGES: list[tuple[str, str, str, str, list[str]]] = [
    ("inherits-all", "[{on: dead, sinks: [mail]}]", "", "[]", ["dead:mail"]),
    ("by-tag", "[{on: dead, sinks: [mail], tags: [nightly]}]", "", "[nightly]", ["dead:mail"]),
    ("other-tag", "[{on: dead, sinks: [mail], tags: [hourly]}]", "", "[nightly]", []),
    ("adds", "[{on: dead, sinks: [mail]}]", "[{on: deadline, after: 30m, sinks: [chat]}]", "[]",
     ["dead:mail", "deadline:chat"]),
    ("changes", "[{on: dead, sinks: [mail]}]", "[{on: dead, sinks: [chat]}]", "[]", ["dead:chat"]),
    ("opts-out-of-one", "[{on: dead, sinks: [mail]}, {on: missed, sinks: [mail]}]", "[{on: dead, sinks: []}]",
     "[]", ["missed:mail"]),
    ("opts-out", "[{on: dead, sinks: [mail]}]", "false", "[]", []),
    ("deployment-rules-not-per-job", "[{on: no_leader, after: 1m, sinks: [chat]}]", "", "[]", []),
]  # fmt: skip


@pytest.mark.parametrize(("rules", "own", "tags", "expected"), [case[1:] for case in MERGES],
                         ids=[case[0] for case in MERGES])  # fmt: skip
def test_a_jobs_rules_merge_the_top_level_ones_with_its_own(
    tmp_path: Path, rules: str, own: str, tags: str, expected: list[str]
) -> None:
    """Top-level rules select jobs by name or tag; a job's alerts: adds, replaces by on, or opts out."""
    job = f"jobs:\n  signups:\n    call: m:f\n    every: 1h\n    tags: {tags}\n"
    if own:
        job += f"    alerts: {own}\n"
    path = tmp_path / "beatd.yaml"
    path.write_text(SINKS + f"  rules: {rules}\n" + job)
    spec = load_config(path, {}).jobs["signups"]
    assert [f"{rule.on}:{','.join(rule.sinks)}" for rule in spec.alert_rules] == expected


def test_secrets_are_never_shown(tmp_path: Path) -> None:
    """A webhook secret from the environment is usable but absent from the settings' repr."""
    path = tmp_path / "beatd.yaml"
    path.write_text("alerts:\n  sinks:\n    hook: {type: webhook, url: 'https://x.example/h', secret: '${S}'}\n" + JOB)
    settings = load_config(path, {"S": "hunter2-very-secret"}).settings
    assert settings.alerts is not None
    assert "hunter2" not in repr(settings)
    hook = settings.alerts.sinks["hook"]
    assert hook.secret is not None and hook.secret.get_secret_value() == "hunter2-very-secret"  # type: ignore[union-attr]


def test_the_readme_alerts_example_is_the_nightly_signups_contract(tmp_path: Path) -> None:
    """README "Alerts": the nightly signups job mails on dead and tells Slack when not done by 00:30 Shanghai."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    section = (REPO / "README.md").read_text().split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    path = tmp_path / "beatd.yaml"
    path.write_text(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    environment = {"SMTP_USER": "u", "SMTP_PASSWORD": "p", "SLACK_WEBHOOK_URL": "https://hooks.slack.example/T/B/x",
                   "BEATD_WEBHOOK_SECRET": "s"}  # fmt: skip
    config = load_config(path, environment)
    assert config.settings.alerts is not None
    sinks = config.settings.alerts.sinks
    spec = config.jobs["signups"]
    by_rule = {rule.on: rule for rule in spec.alert_rules}
    assert {sinks[name].type for name in by_rule["dead"].sinks} == {"email"}
    deadline = by_rule["deadline"]
    assert {sinks[name].type for name in deadline.sinks} == {"slack"} and deadline.after is not None
    fire = spec.trigger().next_after(datetime(2026, 3, 1, tzinfo=UTC))
    assert fire is not None
    due = (fire + deadline.after).astimezone(ZoneInfo("Asia/Shanghai"))
    assert (due.hour, due.minute) == (0, 30)
