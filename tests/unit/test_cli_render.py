"""Fitting CLI tables: cut texts end in an ellipsis, tables fit the width, some columns are never cut."""

from __future__ import annotations

from beatd.cli.render import ELLIPSIS, fit_columns, shorten


def test_shorten_marks_a_cut_with_an_ellipsis() -> None:
    """A text longer than the width is cut to it and ends in an ellipsis; a short one is kept whole."""
    assert shorten("a b\nc", 10) == "a b c"
    assert shorten("x" * 20, 8) == "x" * 7 + ELLIPSIS


def test_fit_columns_drops_then_cuts_only_what_may_be_cut() -> None:
    """The droppable column goes first, then the widest shrinkable one is cut; the others stay whole."""
    headers = ["NAME", "WORDS", "RAW", "WHEN"]
    rows = [["job", "w" * 40, "r" * 30, "2026-12-03T00:05:00+08:00"]]
    kept, fitted = fit_columns(headers, rows, ("WORDS", "RAW"), ("RAW",), width=50)
    assert kept == ["NAME", "WORDS", "WHEN"]
    assert len("  ".join(fitted[0])) <= 50 and fitted[0][2] == rows[0][3] and fitted[0][1].endswith(ELLIPSIS)
    assert fit_columns(headers, rows, ("WORDS", "RAW"), ("RAW",), width=200) == (headers, [list(rows[0])])


def test_fit_columns_shrinks_the_others_once_the_widest_is_at_its_floor() -> None:
    """A shrinkable column cut down to its header's width leaves the next widest to be cut until the table fits."""
    headers = ["A LONG HEADER TEXT", "B"]
    rows = [["a" * 18, "b" * 40]]
    _, fitted = fit_columns(headers, rows, ("A LONG HEADER TEXT", "B"), width=40)
    assert len("  ".join(fitted[0])) <= 40 and fitted[0][0] == "a" * 18 and fitted[0][1].endswith(ELLIPSIS)
    headers = ["WIDE HEADER OF 30 CHARACTERS..", "B"]
    rows = [["a" * 30, "b" * 29]]
    _, fitted = fit_columns(headers, rows, headers, width=45)
    assert len("  ".join(fitted[0])) <= 45 and fitted[0][0] == "a" * 30
