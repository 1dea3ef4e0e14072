"""Jobs the web dashboard tests run (imported by the worker through ``pythonpath``)."""

from __future__ import annotations

XSS = "<script>alert(1)</script>"


def xss() -> str:
    """A result that would run in a page that did not escape it."""
    return XSS


def fail() -> None:
    """Fail (with a traceback), for dead letters."""
    raise RuntimeError("boom <b>not bold</b>")


def ok(**kwargs: object) -> str:
    """Succeed (whatever keyword arguments it is given)."""
    return "fine"
