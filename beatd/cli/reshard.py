"""``beatd reshard --to M``: change the deployment's shard count offline (:mod:`beatd.reshard`)."""

from __future__ import annotations

import click

from beatd import defaults
from beatd.cli.options import config_option
from beatd.cli.runtime import Runtime
from beatd.reshard import Reshard
from beatd.store import connect
from beatd.store.reshard import ReshardStore

__all__ = ["reshard"]


@click.command()
@config_option
@click.option(
    "--to", "to", type=click.IntRange(1, defaults.SHARDS_MAX), required=True, metavar="M", help="The new shard count."
)
@click.option("--dry-run", is_flag=True, help="Check and count the jobs that would move; change nothing.")
@click.pass_obj
def reshard(runtime: Runtime, config_path: str | None, to: int, dry_run: bool) -> None:
    """Move every job's progress, history and state to the shard it belongs to with `shards: M`.

    Offline: stop every beat and worker once the queues are drained; refused (exit 2, saying what is left)
    otherwise. A crashed reshard is finished by running the same command again. Then set `shards: M` in the
    config and start the beats and workers again (docs/sharding.md section 9)."""
    config, _problems = runtime.connection(config_path)
    store = ReshardStore(connect(config.settings.redis))
    summary = Reshard(store, config.namespace, to, cluster=config.settings.redis.cluster).run(dry_run=dry_run)
    click.echo(summary.text())
    if not dry_run and config.shards != to:
        click.echo(f"now set `shards: {to}` in {config.path} before starting the beats and workers again")
