"""Run ``beatd worker`` with candidate performance fixes applied as monkeypatches (beatd's files untouched).

    .venv/bin/python bench/workers/whatif.py --patches pythonpath,to_json -- worker -c CONFIG --concurrency 8

``drain.py --patches LIST`` starts beatd workers through this launcher, so the effect of each suggested fix
on throughput is measured, not guessed. Patches (comma-separated, or ``all``):

* ``pythonpath``: ``Config.pythonpath`` (beatd/config/load.py) memoised per Config instead of calling
  ``Path.resolve()`` on every run (the worker reads it in ``Worker._execute`` for every callable run);
* ``to_json``: ``RunRecord.to_json`` (beatd/records.py) built from the fields directly, without
  ``dataclasses.asdict``'s recursive deep copy (same JSON text);
* ``format_utc``: ``beatd.messages.format_utc`` with integer formatting instead of ``strftime`` (same text);
* ``prefetch``: ``beatd.worker.worker.PREFETCH`` = 8 instead of 2 (fewer, larger XREADGROUP calls);
* ``hiredis``: redis-py with the hiredis parser and packer (``bench/workers/.venv/hiredis-site``, installed
  by ``setup.sh``).

``none`` applies nothing: the launcher alone, as a control.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HIREDIS_SITE = Path(__file__).resolve().parent / ".venv" / "hiredis-site"
PATCHES = ("pythonpath", "to_json", "format_utc", "prefetch", "hiredis")


def patch_pythonpath() -> None:
    """Memoise Config.pythonpath per instance (keyed by id; configs live as long as the worker)."""
    from beatd.config.load import Config

    compute = Config.pythonpath.fget
    assert compute is not None
    cache: dict[int, tuple[Any, tuple[Path, ...]]] = {}

    def pythonpath(self: Config) -> tuple[Path, ...]:
        found = cache.get(id(self))
        if found is None or found[0] is not self:
            found = cache[id(self)] = (self, compute(self))
        return found[1]

    Config.pythonpath = property(pythonpath)  # type: ignore[method-assign,assignment]


def patch_to_json() -> None:
    """RunRecord.to_json without dataclasses.asdict."""
    from beatd.records import RunRecord

    names = tuple(field.name for field in fields(RunRecord))

    def to_json(self: RunRecord) -> str:
        body = {name: value for name in names if (value := getattr(self, name)) is not None}
        if not self.extra:
            del body["extra"]
        if not self.result_truncated:
            del body["result_truncated"]
        return json.dumps(body, separators=(",", ":"))

    RunRecord.to_json = to_json  # type: ignore[method-assign]


def patch_format_utc() -> None:
    """format_utc with integer formatting, in every module that imported it by name."""
    import beatd.messages
    import beatd.worker.worker

    def format_utc(instant: datetime) -> str:
        u = instant.astimezone(UTC)
        text = f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
        return f"{text}.{u.microsecond // 1000:03d}Z" if u.microsecond else text + "Z"

    sample = datetime(2026, 11, 21, 16, 5, 0, 123456, tzinfo=UTC)
    assert format_utc(sample) == beatd.messages.format_utc(sample), "patched format_utc differs"
    beatd.messages.format_utc = format_utc
    beatd.worker.worker.format_utc = format_utc  # type: ignore[attr-defined]


def patch_prefetch() -> None:
    """Read up to 8 entries ahead per runner."""
    import beatd.worker.worker

    beatd.worker.worker.PREFETCH = 8


def main() -> None:
    """Apply the patches, then run beatd's CLI with the arguments after ``--``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patches", default="", help=f"comma-separated subset of {','.join(PATCHES)}, all, or none")
    parser.add_argument("beatd_args", nargs=argparse.REMAINDER, help="-- then beatd's own arguments")
    options = parser.parse_args()
    names = tuple(name for name in options.patches.split(",") if name and name != "none")
    chosen = PATCHES if options.patches == "all" else names
    unknown = set(chosen) - set(PATCHES)
    if unknown:
        parser.error(f"unknown patches: {', '.join(sorted(unknown))}")
    if "hiredis" in chosen:
        if not (HIREDIS_SITE / "hiredis").exists():
            parser.error(f"no hiredis in {HIREDIS_SITE}: run bash bench/workers/setup.sh")
        sys.path.insert(0, str(HIREDIS_SITE))
    for name in chosen:
        if name != "hiredis":
            globals()[f"patch_{name}"]()
    from beatd.cli import main as beatd_main

    arguments = options.beatd_args[1:] if options.beatd_args[:1] == ["--"] else options.beatd_args
    sys.argv = ["beatd", *arguments]
    beatd_main()


if __name__ == "__main__":
    main()
