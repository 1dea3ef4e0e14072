"""Live output: what running jobs write, sent to each run's Redis stream by one thread, for ``beatd logs -f``.

Runners hand output over as it is written (:meth:`LiveOutput.sink`); every ``OUTPUT_FLUSH_INTERVAL`` the thread
sends what gathered for every run in one pipeline, as JSON chunks ``{"stream": ..., "text": ...}`` of at most
``OUTPUT_CHUNK_CHARS`` characters, then ``{"end": true, "status": ...}`` once the run has ended. What waits for
a slow or absent Redis is bounded per run (``OUTPUT_PENDING_CHARS``); the live stream is best effort, the run
record's tail is what is kept.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from beatd import defaults
from beatd.store import RunStore, StoreError
from beatd.worker.output import Sink

__all__ = ["LiveOutput"]

log = logging.getLogger("beatd.worker")


@dataclass
class _Pending:
    """A run's output not sent yet: (stream, text) pieces as written, oldest first, ``size`` characters in all.
    Over ``OUTPUT_PENDING_CHARS``, whole pieces are dropped from the oldest end (a write costs the same however
    much waits); a single piece over it keeps its end."""

    pieces: deque[tuple[str, str]] = field(default_factory=deque)
    size: int = 0
    dropped: int = 0
    status: str | None = None

    def add(self, stream: str, text: str) -> None:
        self.pieces.append((stream, text))
        self.size += len(text)
        while self.size > defaults.OUTPUT_PENDING_CHARS and len(self.pieces) > 1:
            _, first = self.pieces.popleft()
            self.dropped += len(first)
            self.size -= len(first)
        if self.size > defaults.OUTPUT_PENDING_CHARS:  # one piece larger than the cap: keep its end
            cut = self.size - defaults.OUTPUT_PENDING_CHARS
            self.pieces[0] = (stream, text[cut:])
            self.dropped += cut
            self.size -= cut

    def chunks(self) -> list[str]:
        limit = defaults.OUTPUT_CHUNK_CHARS
        out = []
        if self.dropped:
            note = f"[... {self.dropped} characters not streamed (Redis was slow); the run record keeps the end ...]\n"
            out.append(json.dumps({"stream": "note", "text": note}))
        for stream, text in _merged(self.pieces, limit):
            out.extend(
                json.dumps({"stream": stream, "text": text[start : start + limit]})
                for start in range(0, len(text), limit)
            )
        if self.status is not None:
            out.append(json.dumps({"end": True, "status": self.status}))
        return out


def _merged(pieces: Iterable[tuple[str, str]], limit: int) -> Iterator[tuple[str, str]]:
    """Neighbouring pieces of one stream joined, up to about ``limit`` characters each (a longer piece whole)."""
    stream, parts, size = "", list[str](), 0
    for piece_stream, text in pieces:
        if parts and (piece_stream != stream or size + len(text) > limit):
            yield stream, "".join(parts)
            parts, size = [], 0
        stream = piece_stream
        parts.append(text)
        size += len(text)
    if parts:
        yield stream, "".join(parts)


class LiveOutput:
    """The thread that sends runs' output to their live streams."""

    def __init__(self, store: RunStore, interval: float = defaults.OUTPUT_FLUSH_INTERVAL.total_seconds()) -> None:
        self.store = store
        self.interval = interval
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._streamed: set[str] = set()  # runs that wrote something and have not ended
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._loop, name="live-output", daemon=True)

    def start(self) -> None:
        """Start sending."""
        self._thread.start()

    def sink(self, run: str) -> Sink:
        """Where run ``run``'s output goes live."""

        def write(stream: str, text: str) -> None:
            with self._lock:
                self._pending.setdefault(run, _Pending()).add(stream, text)
                self._streamed.add(run)

        return write

    def end(self, run: str, status: str) -> None:
        """Run ``run`` is over (``status``): its stream gets its end marker after its last output. A run that
        wrote nothing has no stream and gets none (``beatd logs -f`` sees its end in its record): most runs of
        a busy worker cost Redis nothing here."""
        with self._lock:
            if run in self._streamed:
                self._streamed.discard(run)
                self._pending.setdefault(run, _Pending()).status = status

    def close(self, timeout: float = 5.0) -> None:
        """Send what is left, then stop."""
        self._stop.set()
        self._thread.join(timeout)

    def flush(self) -> None:
        """Send what has gathered (one pipeline); on a Redis error it is dropped and the error logged once."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        chunks = {run: part.chunks() for run, part in pending.items()}
        ended = [run for run, part in pending.items() if part.status is not None]
        try:
            self.store.append_output(chunks, ended)
        except StoreError as error:
            if not self._failing:
                log.warning("live output of %d runs not sent (their records keep the tail): %s", len(chunks), error)
            self._failing = True
            return
        self._failing = False

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._flush_guarded()
        self._flush_guarded()

    def _flush_guarded(self) -> None:
        try:
            self.flush()
        except Exception:  # the thread outlives any one bad flush
            log.exception("live output not sent")
