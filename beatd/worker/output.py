"""Capturing what a run writes: its stdout, its stderr and its log records, wherever it runs.

A callable runs in a runner thread of the worker (thread isolation) or in a child process (process
isolation); both install :func:`install` once: ``sys.stdout`` and ``sys.stderr`` become :class:`RoutingStream`
proxies and the root logger gets a :class:`RunLogHandler`. While :func:`capturing` is active in a thread (a
context variable, so each runner thread has its own run), what that thread writes goes to the run's sink; a
thread with no run writes where it always did. Log records of a run go to its output only, not to the
worker's log (the other handlers of the root logger are given :func:`outside_runs` as a filter).

Limits: threads a job starts itself do not inherit the run (their output goes to the worker's stderr), and
writes to file descriptors 1 and 2 that bypass ``sys.stdout`` (a callable's own subprocesses, C extensions)
are not captured; a ``command`` job's pipes are (see :mod:`beatd.worker.executor`).

:class:`Tail` keeps the end of a run's output, bounded in bytes, for its run record.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = [
    "LineBuffer",
    "RoutingStream",
    "RunLogHandler",
    "RunOutput",
    "Sink",
    "Tail",
    "capturing",
    "install",
    "outside_runs",
]

Sink = Callable[[str, str], None]
"""Where a run's output goes: ``sink(stream, text)``, ``stream`` one of ``stdout``, ``stderr``, ``log``."""

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
"""How a run's log records read in its output (the worker's own text format)."""

_current: contextvars.ContextVar[Sink | None] = contextvars.ContextVar("beatd_run_output", default=None)


class Tail:
    """The last ``limit`` bytes (UTF-8) of a text written in pieces; older bytes are counted, not kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._parts: list[bytes] = []
        self._size = 0

    def write(self, text: str) -> None:
        """Append ``text``."""
        data = text.encode("utf-8", errors="replace")
        self.total += len(data)
        if self.limit <= 0 or not data:
            return
        self._parts.append(data)
        self._size += len(data)
        if self._size > 2 * self.limit:  # compact now and then, so memory stays about twice the limit
            self._parts = [self._joined()]
            self._size = len(self._parts[0])

    @property
    def cut(self) -> int:
        """Bytes written and not kept."""
        return self.total - min(self.total, self.limit)

    def text(self) -> str:
        """What is kept, as text; when bytes were cut, it starts with a line saying how many."""
        data = self._joined()
        if len(data) == self.total:
            return data.decode("utf-8", errors="replace")
        start = 0
        while start < min(len(data), 3) and data[start] & 0xC0 == 0x80:  # a character cut in two: drop its end
            start += 1
        return f"[... {self.total - len(data) + start} earlier bytes not kept ...]\n" + data[start:].decode(
            "utf-8", errors="replace"
        )

    def _joined(self) -> bytes:
        data = b"".join(self._parts)
        return data[-self.limit :] if len(data) > self.limit else data


class RoutingStream(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr``: what a thread running a job writes goes to its run, the rest to the
    stream it replaced."""

    def __init__(self, name: str, fallback: TextIO) -> None:
        super().__init__()
        self.name = name
        self.fallback = fallback

    def write(self, text: str) -> int:
        """Write to the current run's output, else to the replaced stream."""
        sink = _current.get()
        if sink is None:
            return self.fallback.write(text)
        if text:
            sink(self.name, text)
        return len(text)

    def flush(self) -> None:
        """Flush the replaced stream (a run's output is never buffered here)."""
        if _current.get() is None:
            self.fallback.flush()

    def isatty(self) -> bool:
        """A run's output is not a terminal."""
        return _current.get() is None and self.fallback.isatty()

    def fileno(self) -> int:
        """The replaced stream's descriptor (for code that asks; writes to it are not captured)."""
        return self.fallback.fileno()

    def writable(self) -> bool:
        """Always."""
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """The replaced stream's encoding."""
        return getattr(self.fallback, "encoding", "utf-8") or "utf-8"


class RunLogHandler(logging.Handler):
    """Puts the log records made while a run is captured into its output (``stream`` ``log``)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        """Format and hand to the current run, if any."""
        sink = _current.get()
        if sink is None:
            return
        try:
            sink("log", self.format(record) + "\n")
        except Exception:  # a broken sink must not break the job's logging call
            self.handleError(record)


def outside_runs(record: logging.LogRecord) -> bool:
    """Logging filter: only records made outside a captured run (those of a run go to its output)."""
    return _current.get() is None


def install(level: int | None = None) -> None:
    """Route ``sys.stdout``, ``sys.stderr`` and log records of captured runs (idempotent). In a child process,
    ``level`` sets the root logger's level (the worker's), which the child has no other reason to set."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, RoutingStream):
            setattr(sys, name, RoutingStream(name, stream))
    root = logging.getLogger()
    if level is not None:
        root.setLevel(level)
    if not any(isinstance(handler, RunLogHandler) for handler in root.handlers):
        root.addHandler(RunLogHandler())
    for handler in root.handlers:
        if not isinstance(handler, RunLogHandler) and outside_runs not in handler.filters:
            handler.addFilter(outside_runs)


@contextlib.contextmanager
def capturing(sink: Sink) -> Iterator[None]:
    """Send what this thread writes (and logs) to ``sink`` until the block ends."""
    token = _current.set(sink)
    try:
        yield
    finally:
        _current.reset(token)


class RunOutput:
    """One run's output in the worker: its bounded :class:`Tail` for the run record, and a copy for the live
    stream (``live``); writes after :meth:`close` (a thread the job left behind) are dropped."""

    def __init__(self, limit: int, live: Sink | None = None) -> None:
        self.tail = Tail(limit)
        self.live = live
        self.closed = False

    def __call__(self, stream: str, text: str) -> None:
        """The run's sink."""
        if self.closed:
            return
        self.tail.write(text)
        if self.live is not None:
            self.live(stream, text)

    def close(self) -> None:
        """The run is over."""
        self.closed = True


class LineBuffer:
    """Gathers writes into whole lines (at most ``limit`` characters each) before handing them to ``sink``: a
    ``print`` is two writes, and a child process sends each hand-over through its pipe."""

    def __init__(self, sink: Sink, limit: int = 4096) -> None:
        self.sink = sink
        self.limit = limit
        self._stream = ""
        self._parts: list[str] = []
        self._size = 0

    def __call__(self, stream: str, text: str) -> None:
        """Buffer ``text``; hand over what is buffered at a newline, a change of stream or the size limit."""
        if stream != self._stream:
            self.flush()
            self._stream = stream
        self._parts.append(text)
        self._size += len(text)
        if "\n" in text or self._size >= self.limit:
            self.flush()

    def flush(self) -> None:
        """Hand over whatever is buffered."""
        if self._parts:
            text, self._parts, self._size = "".join(self._parts), [], 0
            self.sink(self._stream, text)
