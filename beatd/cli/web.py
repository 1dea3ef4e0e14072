"""``beatd web``: serve the dashboard and HTTP API of the deployment of a config file (uvicorn)."""

from __future__ import annotations

import contextlib
import copy
import socket
from typing import Any

import click

from beatd.cli.options import config_option
from beatd.cli.runtime import Runtime, UsageProblem

__all__ = ["web"]


@click.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port to listen on.")
@click.option("--allowed-host", "allowed_host", multiple=True, metavar="NAME",
              help="A host name the server answers for (repeatable). On a loopback address the loopback names "
              "always are; on another address, without it, any name is.")  # fmt: skip
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True, help="uvicorn's log level (requests are logged at info).")  # fmt: skip
@click.option("--fd", type=click.IntRange(0), metavar="N",
              help="Serve on this inherited listening TCP socket (as `beatd dev` or systemd socket activation passes "
              "it) instead of binding --host and --port.")  # fmt: skip
@click.pass_obj
def web(
    runtime: Runtime, config_path: str | None, host: str, port: int, allowed_host: tuple[str, ...], log_level: str,
    fd: int | None,
) -> None:  # fmt: skip
    """Serve the web dashboard and the HTTP API (/api/v1). Tokens: BEATD_WEB_READ_TOKEN, BEATD_WEB_ADMIN_TOKEN."""
    import uvicorn

    from beatd.client import Client
    from beatd.web import Catalogue, Tokens, Web, create_app
    from beatd.web.security import allowed_hosts

    config = runtime.load(config_path)
    listening = None
    if fd is not None:
        listening = _inherited(fd)
        host, port = listening.getsockname()[:2]
    try:
        tokens = Tokens.from_environ(runtime.environ, host)
    except ValueError as error:
        raise UsageProblem(str(error)) from error
    client = Client(config=config, actor="web")
    app = create_app(Web(client, Catalogue(client)), tokens, allowed_hosts(host, allowed_host))
    shown = f"[{host}]" if ":" in host else host
    if tokens.generated:
        click.echo("beatd web: no BEATD_WEB_ADMIN_TOKEN or BEATD_WEB_READ_TOKEN set; admin token of this process: "
                   f"{tokens.admin[0]}")  # fmt: skip
        click.echo(f"beatd web: open http://{shown}:{port}/login?token={tokens.admin[0]}", err=False)
    else:
        click.echo(f"beatd web: open http://{shown}:{port}/")
    settings = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                              access_log=log_level in {"debug", "info"}, log_config=_log_config())  # fmt: skip
    server = uvicorn.Server(settings)
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: Ctrl-C (re-raised once stopped) ends it with 0
        server.run(sockets=None if listening is None else [listening])
    if not server.started:
        raise SystemExit(3)  # as uvicorn.run: its STARTUP_FAILURE


def _inherited(fd: int) -> socket.socket:
    """The listening TCP socket open as ``fd``; UsageProblem (exit 2) when it is none."""
    try:
        listening = socket.socket(fileno=fd)
    except OSError as error:
        raise UsageProblem(f"--fd {fd}: not an open socket ({error.strerror})") from error
    tcp = listening.family in (socket.AF_INET, socket.AF_INET6) and listening.type == socket.SOCK_STREAM
    if not tcp or not listening.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        listening.detach()  # not ours to close
        raise UsageProblem(f"--fd {fd}: not a listening TCP socket")
    return listening


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, with the tokens of ``/login?token=`` links redacted from the access log."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_tokens"] = {"()": "beatd.web.security.RedactTokens"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_tokens")
    return config
