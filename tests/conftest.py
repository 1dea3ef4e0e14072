"""Shared fixtures: config files written into a temporary directory."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent

WriteFiles = Callable[[dict[str, str]], Path]

SLOW_FIRST = (
    "test_chaos.py", "test_celery.py", "test_dev.py", "test_celery_relay.py", "test_cluster_shards.py",
    "test_cluster_emission.py", "test_reshard.py", "test_celery_redis_restarts.py", "test_redis_connections.py",
    "test_web_browser.py",
)  # fmt: skip
"""Modules of the longest tests (``./dev test`` prints them), handed out first, so that none of them starts last
and runs on alone after the rest of the suite is done."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow modules first (``./dev test`` gives each module to one test process: ``--dist loadscope``)."""
    items.sort(key=lambda item: item.path.name not in SLOW_FIRST)


def bench_module(name: str) -> ModuleType:
    """``bench/NAME.py`` imported by its path, ``sys.path`` as it was. ``bench/`` on ``sys.path`` would let
    ``bench/celery.py`` shadow the celery package for every later test in the process."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the module runs
    path = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path  # a bench script puts bench/ on sys.path for its own imports (bench/emission.py)
    return module


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one ``beatd`` command in this process as a user would from a shell (stdout and stderr are not a
    terminal; the environment is this one's without ``BEATD_*``, plus ``env``): its exit code, stdout and
    stderr. An exception the command did not turn into a message and an exit code fails the test, as the
    traceback would show it to the user. In process, for speed: a subprocess pays ~0.5 s of imports a command
    (the daemons' tests start real processes)."""
    from click.testing import CliRunner

    from beatd.cli import Runtime, cli

    environment = {key: value for key, value in os.environ.items() if not key.startswith("BEATD_")} | (env or {})
    runtime = Runtime(environ=environment, cwd=REPO)
    result = CliRunner().invoke(cli, list(args), obj=runtime, env=env, catch_exceptions=False)
    return subprocess.CompletedProcess(["beatd", *args], result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def write_files(tmp_path: Path) -> WriteFiles:
    """Write ``{relative path: YAML text}`` under tmp_path (dedented); return the path of the first file."""

    def write(files: dict[str, str]) -> Path:
        first = None
        for relative, text in files.items():
            path = tmp_path / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n"))
            first = first or path
        assert first is not None
        return first

    return write
