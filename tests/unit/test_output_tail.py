"""The bounded tail of a run's output keeps the end, counts what it cut, and never splits a character."""

from __future__ import annotations

import pytest

from beatd.worker.output import Tail


@pytest.mark.parametrize(
    ("limit", "pieces", "expected"),
    [
        (10, ["abc", "def"], "abcdef"),
        (4, ["abc", "def"], "[... 2 earlier bytes not kept ...]\ncdef"),
        (3, ["é" * 4], "[... 6 earlier bytes not kept ...]\né"),  # 8 bytes; the last 3 hold one whole é
        (0, ["abc"], "[... 3 earlier bytes not kept ...]\n"),
        (5, ["x"] * 1000, "[... 995 earlier bytes not kept ...]\nxxxxx"),
    ],
)
def test_tail_keeps_the_end_and_says_what_it_cut(limit: int, pieces: list[str], expected: str) -> None:
    """Each case: the text kept, with the truncation line when bytes were cut."""
    tail = Tail(limit)
    for piece in pieces:
        tail.write(piece)
    assert tail.text() == expected
    assert tail.total == sum(len(piece.encode()) for piece in pieces)
