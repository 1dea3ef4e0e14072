"""Progress of a long CLI step on stderr: a tqdm bar on a terminal, plain lines otherwise (logs, pipes, CI)."""

from __future__ import annotations

import shutil
import sys
import time
from types import TracebackType
from typing import IO

import click
from tqdm import tqdm

__all__ = ["LINE_EVERY", "Progress"]

LINE_EVERY = 1.0
"""Least time (s) between two plain progress lines (the last one is always printed)."""


class Progress:
    """Counts ``done`` of ``total`` under a ``label``; ``update(done, note)`` moves it (never backwards)."""

    def __init__(self, label: str, total: int, stream: IO[str] | None = None) -> None:
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        # The size as every table takes it ($COLUMNS, else the terminal's, else 80x24): tqdm's own reads 0x0 on
        # a terminal that has no size set (a fresh pty, some CI runners) and then draws nothing.
        size = shutil.get_terminal_size()
        self._bar = (
            tqdm(total=total, desc=label, unit="fire", file=self.stream, ncols=size.columns, nrows=size.lines)
            if self.stream.isatty()
            else None
        )
        self._printed_at = float("-inf")
        self._note = ""

    def update(self, done: int, note: str = "") -> None:
        """Show ``done`` of ``total`` (and ``note``, e.g. counts by status)."""
        if done == self.done and note == self._note:
            return
        if self._bar is not None:
            self._bar.update(done - self.done)
            if note:
                self._bar.set_postfix_str(note)
        elif done >= self.total or time.monotonic() - self._printed_at >= LINE_EVERY:
            self._printed_at = time.monotonic()
            click.echo(f"{self.label}: {done}/{self.total}" + (f" ({note})" if note else ""), file=self.stream)
        self.done, self._note = done, note

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()
