"""How a run's output is gathered on its way: sys.stdout and sys.stderr stand in for real text streams (bytes
through ``buffer``), a child batches its writes, the live stream's backlog stays bounded, and a command's
output files are read in bounded looks."""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import time

import pytest

from beatd import defaults
from beatd.worker.executor import READ_SIZE, READS_PER_LOOK, _Follower
from beatd.worker.live import _Pending
from beatd.worker.output import Batch, RoutingStream, capturing


def test_a_routing_stream_takes_text_only_and_bytes_through_its_buffer() -> None:
    """Like a real text stream, write() refuses bytes (a TypeError, so click finds the binary side); bytes
    written to ``buffer`` reach the run decoded, a character split across two writes whole; reconfigure()
    and line_buffering exist."""
    seen: list[tuple[str, str]] = []
    stream = RoutingStream("stdout", io.StringIO())
    with capturing(lambda name, text: seen.append((name, text))):
        with pytest.raises(TypeError, match="must be str, not bytes"):
            stream.write(b"raw")  # type: ignore[arg-type]
        stream.write("text\n")
        assert stream.buffer.write(b"caf\xc3") == 4
        assert stream.buffer.write(bytearray(b"\xa9\n")) == 2
        stream.buffer.write(b"cut \xc3")  # unfinished when the run ends: a replacement character
        stream.reconfigure(line_buffering=True)
        assert stream.line_buffering is False
    assert "".join(text for _, text in seen) == "text\ncafé\ncut \ufffd"
    assert {name for name, _ in seen} == {"stdout"}


def test_outside_a_run_bytes_go_to_the_replaced_streams_buffer_and_a_missing_stream_drops_them() -> None:
    """With no run, text and bytes go to the stream replaced; a worker started without one (None) drops
    what is written instead of raising."""
    replaced = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    stream = RoutingStream("stderr", replaced)
    stream.write("a")
    stream.buffer.write(b"b")
    stream.flush()
    stream.buffer.flush()
    assert replaced.buffer.getvalue() == b"ab"  # type: ignore[attr-defined]
    missing = RoutingStream("stdout", None)
    assert (missing.write("x"), missing.buffer.write(b"y"), missing.isatty(), missing.line_buffering) == (
        1, 1, False, False,
    )  # fmt: skip
    missing.flush()
    missing.buffer.flush()
    with pytest.raises(io.UnsupportedOperation):
        missing.fileno()


def test_a_batch_hands_over_at_its_size_on_flush_and_after_its_interval() -> None:
    """Pieces gather (one stream's neighbours merged) until ``size`` characters wait, a flush, or ``interval``
    after the first (its thread), in the order written."""
    sent: list[list[tuple[str, str]]] = []
    batch = Batch(sent.append, size=10, interval=0.05)
    batch.start()
    batch("stdout", "abc")
    batch("stdout", "de")
    batch("stderr", "fghij")
    assert sent == [[("stdout", "abcde"), ("stderr", "fghij")]]
    batch("log", "k")
    batch.flush()
    assert sent[-1] == [("log", "k")]
    batch("stdout", "late")
    deadline = time.monotonic() + 10
    while len(sent) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent[-1] == [("stdout", "late")]


def test_a_batch_sends_one_message_for_many_prints() -> None:
    """A thousand short writes are a handful of hand-overs, not a thousand."""
    sent: list[list[tuple[str, str]]] = []
    batch = Batch(sent.append)
    for number in range(1000):
        batch("stdout", f"line {number:05d}\n")
    batch.flush()
    assert len(sent) <= 3 and "".join(text for pieces in sent for _, text in pieces).count("\n") == 1000


def test_the_live_backlog_drops_whole_oldest_pieces_says_so_and_merges_neighbours() -> None:
    """Over its cap the backlog drops the oldest pieces whole (counted in a note line), stays within the cap,
    and sends neighbours of one stream together in chunks of at most OUTPUT_CHUNK_CHARS."""
    pending = _Pending()
    written = defaults.OUTPUT_PENDING_CHARS // 1000 + 10
    for _ in range(written):
        pending.add("stdout", "x" * 1000)
    pending.add("stderr", "e\n")
    kept = defaults.OUTPUT_PENDING_CHARS // 1000  # whole pieces of 1,000 under the cap, with the 2 of stderr
    assert (pending.size, pending.dropped) == (kept * 1000 + 2, (written - kept) * 1000)
    chunks = [json.loads(chunk) for chunk in pending.chunks()]
    assert chunks[0]["stream"] == "note" and f"{pending.dropped} characters not streamed" in chunks[0]["text"]
    out = chunks[1:-1]
    assert {chunk["stream"] for chunk in out} == {"stdout"} and "".join(c["text"] for c in out) == "x" * kept * 1000
    assert max(len(c["text"]) for c in out) <= defaults.OUTPUT_CHUNK_CHARS and len(out) == -(-kept // 4)
    assert chunks[-1] == {"stream": "stderr", "text": "e\n"}
    big = _Pending()
    big.add("stdout", "y" * (defaults.OUTPUT_PENDING_CHARS + 5))  # one piece over the cap keeps its end
    assert (big.size, big.dropped) == (defaults.OUTPUT_PENDING_CHARS, 5)


def test_a_commands_output_file_is_read_in_bounded_looks_and_the_last_stops_at_its_size() -> None:
    """Against a writer faster than the reader (each read makes the file grow), a look reads at most
    READS_PER_LOOK blocks, and the final look reads what was there when it began, then returns."""
    with tempfile.TemporaryFile() as file:
        os.write(file.fileno(), b"a" * READ_SIZE)
        calls = 0

        def faster_writer(stream: str, text: str) -> None:
            nonlocal calls
            calls += 1
            if calls > 10 * READS_PER_LOOK:
                raise AssertionError("the follower never stops reading")
            os.pwrite(file.fileno(), b"b" * 2 * READ_SIZE, os.fstat(file.fileno()).st_size)

        follower = _Follower(file, "stdout", faster_writer)
        follower.pump()
        assert calls == READS_PER_LOOK
        size = os.fstat(file.fileno()).st_size
        follower.pump(final=True)
        assert follower.offset == size


def test_a_batch_keeps_order_across_its_thread_and_writers() -> None:
    """Hand-overs from the batch's thread and from writers never interleave out of order."""
    sent: list[list[tuple[str, str]]] = []
    batch = Batch(sent.append, size=64, interval=0.001)
    batch.start()
    writer = threading.Thread(target=lambda: [batch("stdout", f"{n:06d}\n") for n in range(2000)])
    writer.start()
    writer.join()
    batch.flush()
    text = "".join(piece for pieces in sent for _, piece in pieces)
    assert text == "".join(f"{n:06d}\n" for n in range(2000))
