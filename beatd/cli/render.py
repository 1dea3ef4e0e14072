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

TABLE_CHUNK = 1000
"""Lines of a table written in one call."""

MIN_COLUMN = 8
"""Narrowest a column is squeezed to when a table is fitted to the terminal."""


def shorten(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis when longer."""
    if len(text) <= width and text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text  # already one line with single spaces (the common case: 100,000 rows of jobs)
    line = " ".join(text.split())
    return line if len(line) <= width else line[: max(width - 1, 0)] + ELLIPSIS


def fit_columns(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    shrinkable: Sequence[str],
    droppable: Sequence[str] = (),
    width: int | None = None,
) -> tuple[list[str], list[list[str]]]:
    """The table fitted to ``width`` (default: the terminal's, ``shutil.get_terminal_size``, which reads
    ``$COLUMNS``; 80 when there is none): the ``droppable`` columns (by header) are left out, in order, while
    the rest cannot fit; then the widest ``shrinkable`` column is cut, with an ellipsis, until it fits. No
    column is cut below its header or MIN_COLUMN; the others are never cut (so a very narrow terminal wraps)."""
    total = width if width is not None else shutil.get_terminal_size().columns
    keep = list(range(len(headers)))

    def floor(index: int) -> int:
        return max(MIN_COLUMN, len(headers[index])) if headers[index] in shrinkable else widths[index]

    widths = [max([len(header), *(len(row[index]) for row in rows)]) for index, header in enumerate(headers)]
    for header in droppable:
        if sum(min(widths[i], floor(i)) for i in keep) + 2 * (len(keep) - 1) <= total or header not in headers:
            break
        keep.remove(headers.index(header))
    allowed = [index for index in keep if headers[index] in shrinkable]
    while sum(widths[index] for index in keep) + 2 * (len(keep) - 1) > total:
        # The widest column that may still shrink (one already at its floor leaves the others to shrink).
        above = [index for index in allowed if widths[index] > floor(index)]
        if not above:
            break
        widths[max(above, key=lambda index: widths[index])] -= 1
    return [headers[index] for index in keep], [[shorten(row[index], widths[index]) for index in keep] for row in rows]


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print left-aligned columns separated by two spaces, headers first; written ``TABLE_CHUNK`` lines at a time,
    so a long table streams to a pager without one write per line."""
    widths = [max([len(header), *(len(row[index]) for row in rows)]) for index, header in enumerate(headers)]
    lines: list[str] = []
    for row in [list(headers), *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if len(lines) >= TABLE_CHUNK:
            click.echo("\n".join(lines))
            lines = []
    if lines:
        click.echo("\n".join(lines))


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))
