"""``beatd install-systemd``: write the unit files, a config and an env template; print what to run next."""

from __future__ import annotations

import os
import shutil
import sys
from importlib import resources
from pathlib import Path

import click

from beatd.systemd_units import render_units, render_user_units

__all__ = ["install_systemd"]

ENV_TEMPLATE = """\
# Secrets for beatd, one KEY=value per line; this file must be readable by root only (mode 0600).
# BEATD_REDIS_URL=redis://:PASSWORD@redis.internal:6379/0
# BEATD_SIGNING_KEY=a-long-random-string-shared-by-beat-and-workers
"""


def _beatd_path() -> str:
    beside = Path(sys.executable).parent / "beatd"
    if beside.exists():
        return str(beside.absolute())
    found = shutil.which("beatd")
    return str(Path(found).absolute()) if found else str(beside.absolute())


@click.command("install-systemd")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"), show_default=True,
              help="Install under this directory (for images and tests).")  # fmt: skip
@click.option("--user", "user_mode", is_flag=True, help="Install user units (systemctl --user) in ~/.config.")
def install_systemd(root: Path, user_mode: bool) -> None:
    """Write the beatd units, /etc/beatd/beatd.yaml (never overwritten) and an env template."""
    beatd = _beatd_path()
    if user_mode:
        home = root / Path.home().relative_to("/") if root != Path("/") else Path.home()
        unit_dir, config_dir = home / ".config/systemd/user", home / ".config/beatd"
        units, systemctl = render_user_units(beatd), "systemctl --user"
    else:
        unit_dir, config_dir = root / "etc/systemd/system", root / "etc/beatd"
        units, systemctl = render_units(beatd), "systemctl"
    unit_dir.mkdir(parents=True, exist_ok=True)
    config_dir.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (unit_dir / name).write_text(text)
        click.echo(f"wrote {unit_dir / name}")
    config = config_dir / "beatd.yaml"
    if config.exists():
        click.echo(f"kept {config} (it exists)")
    else:
        config.write_text((resources.files("beatd") / "examples" / "beatd.yaml").read_text(encoding="utf-8"))
        click.echo(f"wrote {config} (the example: edit it, then `beatd check -c {config}`)")
    environment = config_dir / "beatd.env"
    if environment.exists():
        click.echo(f"kept {environment} (it exists)")
    else:
        descriptor = os.open(environment, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(ENV_TEMPLATE)
        click.echo(f"wrote {environment} (mode 0600: put secrets here)")
    click.echo("\nnext:")
    click.echo(f"  {systemctl} daemon-reload")
    click.echo(f"  {systemctl} enable --now beatd.target beatd-beat.service beatd-worker@1.service")
    click.echo(f"  {systemctl} reload beatd-beat.service   # after editing the config")
    click.echo(f"  {systemctl} start beatd-worker@2.service # more workers")
