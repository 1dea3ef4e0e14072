"""Shared fixtures: config files written into a temporary directory."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

WriteFiles = Callable[[dict[str, str]], Path]


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
