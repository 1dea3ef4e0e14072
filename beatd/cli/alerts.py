"""``beatd alerts``: recent alerts and their delivery state; ``beatd alerts test SINK`` sends a test message."""

from __future__ import annotations

from typing import Any

import click

from beatd.alert_sinks import SinkFailed, send
from beatd.cli.options import config_option, connection_options, json_option
from beatd.cli.render import echo_json, echo_table, shorten
from beatd.cli.runtime import Runtime
from beatd.client.alerts import recent_alerts, test_payload
from beatd.errors import UsageProblem
from beatd.store import connect
from beatd.store.alerts import AlertStore

__all__ = ["alerts"]


@click.group(invoke_without_command=True)
@connection_options
@json_option
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Most alerts.")
@click.pass_context
def alerts(
    ctx: click.Context, config_path: str | None, redis_url: str | None, namespace: str | None, as_json: bool, limit: int
) -> None:
    """Recent alerts, newest first, with each sink's delivery state (delivered, retrying, given up)."""
    ctx.ensure_object(Runtime)
    if ctx.invoked_subcommand is not None:
        return
    config, _ = ctx.obj.connection(config_path, redis_url, namespace)
    connection = connect(config.settings.redis)
    found = recent_alerts([AlertStore(connection, keys) for keys in config.shard_keys()], limit)
    if as_json:
        echo_json(found)
        return
    rows = [
        [alert["raised_at"] or "?", alert["rule"] or "?", alert["subject"] or "?", _sinks(alert),
         shorten(alert["summary"], 70)]
        for alert in found
    ]  # fmt: skip
    echo_table(("RAISED", "RULE", "SUBJECT", "DELIVERY", "SUMMARY"), rows)


def _sinks(alert: dict[str, Any]) -> str:
    return ", ".join(f"{sink}: {state['state']}" for sink, state in sorted(alert["sinks"].items())) or "-"


@alerts.command("test")
@click.argument("sink_name", metavar="SINK")
@config_option
@click.pass_obj
def alerts_test(runtime: Runtime, sink_name: str, config_path: str | None) -> None:
    """Send a test alert to SINK (a name under alerts.sinks) now, from this host; exit 1 if it fails."""
    config = runtime.load(config_path)
    settings = config.settings.alerts
    sinks = settings.sinks if settings is not None else {}
    if sink_name not in sinks:
        known = ", ".join(sorted(sinks)) or "none declared"
        raise UsageProblem(f"unknown sink {sink_name!r}: expected one of alerts.sinks ({known})")
    alert = test_payload(config.namespace, sink_name, runtime.clock.now())
    try:
        send(sinks[sink_name], alert)
    except SinkFailed as error:
        raise click.ClickException(f"sink {sink_name}: {error}") from None
    click.echo(f"sent a test alert to {sink_name} (id {alert['id']})")
