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

import codecs
import contextlib
import contextvars
import io
import itertools
import logging
import operator
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from beatd import defaults

__all__ = [
    "Batch",
    "RoutingBuffer",
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


class _Capture:
    """A thread's current run: its sink, and a UTF-8 decoder per stream for what it writes as bytes."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.decoders: dict[str, codecs.IncrementalDecoder] = {}

    def write_bytes(self, stream: str, data: bytes, final: bool = False) -> None:
        decoder = self.decoders.get(stream)
        if decoder is None:
            decoder = self.decoders[stream] = codecs.getincrementaldecoder("utf-8")(errors="replace")
        if text := decoder.decode(data, final):
            self.sink(stream, text)

    def end(self) -> None:
        """Pass on a character left unfinished by a last bytes write (as a replacement character)."""
        for stream in list(self.decoders):
            self.write_bytes(stream, b"", final=True)


_current: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar("beatd_run_output", default=None)


class RoutingStream(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr``: what a thread running a job writes goes to its run, the rest to the
    stream it replaced (``fallback``; None when the worker started without one: then it is dropped). Like a
    real text stream it takes ``str`` only; bytes go through :attr:`buffer`."""

    def __init__(self, name: str, fallback: TextIO | None) -> None:
        super().__init__()
        self.name = name
        self.fallback = fallback
        self._buffer = RoutingBuffer(self)

    def write(self, text: str) -> int:
        """Write to the current run's output, else to the replaced stream."""
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        capture = _current.get()
        if capture is None:
            return self.fallback.write(text) if self.fallback is not None else len(text)
        if text:
            capture.sink(self.name, text)
        return len(text)

    def flush(self) -> None:
        """Flush the replaced stream (a run's output is never buffered here)."""
        if _current.get() is None and self.fallback is not None:
            self.fallback.flush()

    def isatty(self) -> bool:
        """A run's output is not a terminal."""
        return _current.get() is None and self.fallback is not None and self.fallback.isatty()

    def fileno(self) -> int:
        """The replaced stream's descriptor (for code that asks; writes to it are not captured)."""
        if self.fallback is None:
            raise io.UnsupportedOperation(f"sys.{self.name} has no file descriptor")
        return self.fallback.fileno()

    def writable(self) -> bool:
        """Always."""
        return True

    def reconfigure(self, **changes: Any) -> None:
        """Accepted and ignored (a job asking for another encoding or buffering): a run's output is text,
        passed on as it is written."""

    @property
    def buffer(self) -> RoutingBuffer:
        """The binary side: bytes written go to the run decoded as UTF-8, else to the replaced stream's."""
        return self._buffer

    @property
    def line_buffering(self) -> bool:
        """The replaced stream's (a run's output is passed on at once anyway)."""
        return bool(getattr(self.fallback, "line_buffering", False))

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """The replaced stream's encoding."""
        return getattr(self.fallback, "encoding", "utf-8") or "utf-8"


class RoutingBuffer(io.RawIOBase):
    """``sys.stdout.buffer`` of a :class:`RoutingStream`: unbuffered (threads of several runs share it), bytes
    decoded incrementally (a character split across writes stays whole) into the current run's output."""

    def __init__(self, text: RoutingStream) -> None:
        super().__init__()
        self.text = text

    def write(self, data: Any) -> int:
        """Write bytes to the current run's output, else to the replaced stream's buffer."""
        view = memoryview(data).cast("B")  # a TypeError for str, as a real binary stream
        capture = _current.get()
        if capture is not None:
            capture.write_bytes(self.text.name, view.tobytes())
            return len(view)
        fallback = getattr(self.text.fallback, "buffer", None)
        if fallback is None:
            return len(view)
        written = fallback.write(view)
        return len(view) if written is None else int(written)

    def flush(self) -> None:
        """Flush the replaced stream's buffer."""
        if _current.get() is None and (fallback := getattr(self.text.fallback, "buffer", None)) is not None:
            fallback.flush()

    def writable(self) -> bool:
        """Always."""
        return True

    def fileno(self) -> int:
        """The replaced stream's descriptor."""
        return self.text.fileno()

    def isatty(self) -> bool:
        """As the text stream."""
        return self.text.isatty()


class RunLogHandler(logging.Handler):
    """Puts the log records made while a run is captured into its output (``stream`` ``log``)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(defaults.LOG_FORMAT))  # as the worker's own text lines

    def emit(self, record: logging.LogRecord) -> None:
        """Format and hand to the current run, if any."""
        capture = _current.get()
        if capture is None:
            return
        try:
            capture.sink("log", self.format(record) + "\n")
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
    capture = _Capture(sink)
    token = _current.set(capture)
    try:
        yield
    finally:
        _current.reset(token)
        capture.end()


class RunOutput:
    """One run's output in the worker: its bounded :class:`Tail` for the run record, and a copy for the live
    stream (``live``); writes after :meth:`close` (a thread the job left behind) are dropped."""

    def __init__(self, limit: int, live: Sink | None = None) -> None:
        self.tail = Tail(limit)
        self.live = live
        self.closed = False
        self._lock = threading.Lock()  # a job's threads may share its run (contextvars.copy_context)

    def __call__(self, stream: str, text: str) -> None:
        """The run's sink."""
        with self._lock:
            if self.closed:
                return
            self.tail.write(text)
            if self.live is not None:
                self.live(stream, text)

    def close(self) -> None:
        """The run is over."""
        with self._lock:
            self.closed = True


class Batch:
    """Gathers a run's writes and hands them over as one list of ``(stream, text)`` pieces (neighbours of one
    stream merged): once ``size`` characters wait, ``interval`` seconds after the first of them (a thread of
    its own, started by :meth:`start`), or at :meth:`flush`. A child process sends each hand-over through its
    pipe: one message per ``print`` would cost more than the print."""

    def __init__(
        self,
        send: Callable[[list[tuple[str, str]]], None],
        size: int = defaults.OUTPUT_BATCH_CHARS,
        interval: float = defaults.OUTPUT_BATCH_INTERVAL.total_seconds(),
    ) -> None:
        self.send = send
        self.size = size
        self.interval = interval
        self._lock = threading.Lock()  # held while sending, so hand-overs keep their order
        self._waiting = threading.Condition(self._lock)
        self._pieces: deque[tuple[str, str]] = deque()
        self._chars = 0
        self._since = 0.0

    def start(self) -> None:
        """Start the thread that hands over what has waited ``interval``."""
        threading.Thread(target=self._tick, name="output-batch", daemon=True).start()

    def __call__(self, stream: str, text: str) -> None:
        """Add ``text`` of ``stream``."""
        with self._lock:
            if not self._pieces:
                self._since = time.monotonic()
                self._waiting.notify()
            self._pieces.append((stream, text))
            self._chars += len(text)
            if self._chars >= self.size:
                self._send()

    def flush(self) -> None:
        """Hand over whatever waits (the run is ending); returns once it is sent."""
        with self._lock:
            self._send()

    def _send(self) -> None:
        if self._pieces:
            pieces, self._pieces, self._chars = self._pieces, deque(), 0
            merged = itertools.groupby(pieces, key=operator.itemgetter(0))
            self.send([(stream, "".join(text for _, text in run)) for stream, run in merged])

    def _tick(self) -> None:
        while True:
            with self._lock:
                while not self._pieces:
                    self._waiting.wait()
                due = self._since + self.interval
            time.sleep(max(0.0, due - time.monotonic()))
            with self._lock:
                if self._pieces and time.monotonic() >= self._since + self.interval:
                    try:
                        self._send()
                    except (OSError, ValueError):  # the pipe is gone: the worker is discarding this child
                        return
