"""Plain-text tables and JSON for the CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from typing import Any

import click

__all__ = ["ELLIPSIS", "echo_json", "echo_table", "fit_columns", "shorten"]

ELLIPSIS = "…"
"""Ends a text cut to fit a column, so a cut is never mistaken for the whole text."""

MIN_COLUMN = 8
"""Narrowest a column is squeezed to when a table is fitted to the terminal."""


def shorten(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis when longer."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: max(width - 1, 0)] + ELLIPSIS


def fit_columns(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None = None) -> list[list[str]]:
    """``rows`` with the widest columns cut (with an ellipsis) until the table fits ``width`` (default: the
    terminal's, ``shutil.get_terminal_size``; 80 when there is none). Columns narrower than MIN_COLUMN stay."""
    total = width if width is not None else shutil.get_terminal_size().columns
    widths = [max([len(header), *(len(row[index]) for row in rows)]) for index, header in enumerate(headers)]
    while sum(widths) + 2 * (len(widths) - 1) > total:
        widest = max(range(len(widths)), key=lambda index: widths[index])
        if widths[widest] <= max(MIN_COLUMN, len(headers[widest])):
            break
        widths[widest] -= 1
    return [[shorten(cell, widths[index]) for index, cell in enumerate(row)] for row in rows]


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print left-aligned columns separated by two spaces, headers first."""
    widths = [max([len(header), *(len(row[index]) for row in rows)]) for index, header in enumerate(headers)]
    for row in [list(headers), *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))
