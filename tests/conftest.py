"""Shared fixtures: config files written into a temporary directory."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent

WriteFiles = Callable[[dict[str, str]], Path]


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
