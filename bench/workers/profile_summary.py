"""Summarise a py-spy raw (collapsed-stack) profile of a beatd worker: top self and cumulative functions.

    .venv/bin/python bench/workers/profile_summary.py /tmp/wprof/beatd-thread-c8.txt --top 25

Input lines are ``process ...;thread (...): name;frame;frame;... COUNT`` as written by
``py-spy record -f raw --threads --subprocesses`` (``drain.py --profile DIR`` writes them). Frames are keyed
by function and file (line numbers dropped). Samples are split by role: the worker's main thread, its runner
threads, its heartbeat thread, and job child processes. ``self`` = samples with the function on top of the
stack; ``cum`` = samples with the function anywhere on the stack (counted once per sample). Two more views:
samples by the innermost beatd function on the stack (what beatd code asked for that work), and by the
module of the leaf frame. A sample counts only if py-spy saw the thread active (not idle) or, with ``--gil``
recordings, holding the GIL. Prints tables and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
from pathlib import Path

from _common import print_table  # type: ignore[import-not-found]

LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


def library(frame: str) -> str:
    """Where a leaf frame's code lives: ``beatd/...`` module, a library's top package, or the stdlib module."""
    match = FRAME.match(frame)
    file = match["file"] if match else frame
    if file.startswith("beatd/"):
        return file
    if file.startswith("<frozen "):
        return file[len("<frozen ") : -1]
    return file.split("/", 1)[0] if "/" in file else file.removesuffix(".py")


def frame_key(frame: str) -> str:
    """``function (file)`` without the line number."""
    match = FRAME.match(frame)
    return f"{match['function']} ({match['file']})" if match else frame


def role(process: str, thread: str, root_pid: str | None) -> str:
    """main | runner | heartbeat | child, from the process and thread labels."""
    if root_pid is not None and f"process {root_pid}:" not in process:
        return "child"
    if "runner-" in thread:
        return "runner"
    if "heartbeat" in thread:
        return "heartbeat"
    return "main"


def summarise(path: Path, top: int) -> dict[str, object]:
    """Read the profile and compute the tables."""
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        match = LINE.match(line)
        if match:
            parts = match["stack"].split(";")
            rows.append((parts[0], parts[1] if len(parts) > 1 else "", parts[2:], int(match["count"])))
    pids = collections.Counter(re.sub(r"^process (\d+):.*", r"\1", process) for process, *_ in rows)
    root_pid = min(pids, key=int) if pids else None  # the worker starts before its children
    by_role: collections.Counter[str] = collections.Counter()
    self_counts: collections.Counter[str] = collections.Counter()
    cumulative: collections.Counter[str] = collections.Counter()
    owners: collections.Counter[str] = collections.Counter()
    libraries: collections.Counter[str] = collections.Counter()
    total = 0
    for process, thread, frames, count in rows:
        total += count
        by_role[role(process, thread, root_pid)] += count
        keys = [frame_key(frame) for frame in frames]
        if keys:
            self_counts[keys[-1]] += count
        for key in set(keys):
            cumulative[key] += count
        libraries[library(frames[-1]) if frames else "?"] += count
        beatd_frames = [key for key in keys if "(beatd/" in key]
        owners[beatd_frames[-1] if beatd_frames else "(no beatd frame)"] += count

    def share(count: int) -> str:
        return f"{100.0 * count / total:.1f}%" if total else "-"

    print(f"{path}: {total} samples")
    print_table(["role", "samples", "share"], [[name, n, share(n)] for name, n in by_role.most_common()])
    print()
    print_table(["self", "share", "function"], [[n, share(n), key] for key, n in self_counts.most_common(top)])
    print()
    print_table(["cum", "share", "function"], [[n, share(n), key] for key, n in cumulative.most_common(top)])
    print()
    print_table(["samples", "share", "innermost beatd function on the stack (its own code and the libraries it calls)"],
                [[n, share(n), key] for key, n in owners.most_common(top)])  # fmt: skip
    print()
    print_table(["samples", "share", "module of the leaf frame"],
                [[n, share(n), key] for key, n in libraries.most_common(top)])  # fmt: skip
    return {
        "profile": str(path),
        "samples": total,
        "roles": dict(by_role),
        "self": self_counts.most_common(top),
        "cumulative": cumulative.most_common(top),
        "innermost_beatd": owners.most_common(top),
        "leaf_module": libraries.most_common(top),
    }


def main() -> None:
    """Summarise each profile given."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profiles", nargs="+", type=Path, help="py-spy raw output files")
    parser.add_argument("--top", type=int, default=25, help="rows per table (default 25)")
    options = parser.parse_args()
    report = [summarise(path, options.top) for path in options.profiles]
    print(json.dumps({"benchmark": "workers/profile_summary", "profiles": report}))


if __name__ == "__main__":
    main()
