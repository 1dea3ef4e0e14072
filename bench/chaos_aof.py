"""Read what Redis applied from its append-only file (Redis 7 multi-part AOF): for the chaos soak's counts.

Redis replicates a Lua script by its effects: each script call that wrote something is logged as
``MULTI``, the write commands it made (``XADD`` with the entry id Redis chose, ``HSET``, ...), ``EXEC``. Redis
writes each command to the file before its client hears back (with any ``appendfsync``; the kernel keeps
the pages through a kill -9 of redis-server), and on start after a kill -9
Redis cuts a torn tail (``aof-load-truncated yes``) and drops a ``MULTI`` with no ``EXEC``; this reader does
the same, so the transactions it yields are exactly the state Redis has. Workers ``XDEL`` acknowledged
entries, so the stream itself forgets emissions; the log does not.

Only the incremental files are parsed. The base file must be the empty one Redis writes when it first
starts: after a rewrite (``BGREWRITEAOF``, or the automatic one, which the soak switches off with
``auto-aof-rewrite-percentage 0``) the base holds compacted state and the history before it is gone, and
:func:`read_transactions` refuses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

__all__ = ["AofError", "aof_files", "parse_commands", "read_transactions", "transactions"]

Command = list[str]


class AofError(Exception):
    """The AOF cannot give the whole history (rewritten, missing, or not the multi-part layout)."""


def aof_files(data_dir: Path, name: str = "appendonly.aof") -> list[Path]:
    """The incremental AOF files of ``data_dir`` in order, from the manifest; refuses a rewritten AOF."""
    folder = data_dir / "appendonlydir"
    manifest = folder / f"{name}.manifest"
    if not manifest.exists():
        raise AofError(f"no AOF manifest at {manifest}")
    incremental: list[tuple[int, Path]] = []
    for line in manifest.read_text().splitlines():
        fields = line.split()
        entry = dict(zip(fields[0::2], fields[1::2], strict=False))
        kind, seq = entry.get("type"), int(entry.get("seq", "0"))
        if kind == "b" and seq != 1:
            raise AofError(f"the AOF was rewritten (base seq {seq}): history before the rewrite is gone")
        if kind == "h":
            raise AofError("the AOF holds history files: a rewrite is in progress or was interrupted")
        if kind == "i":
            incremental.append((seq, folder / entry["file"]))
    if not incremental:
        raise AofError(f"no incremental AOF file in {manifest}")
    return [path for _, path in sorted(incremental)]


def parse_commands(data: bytes) -> Iterator[Command]:
    """Each RESP command of ``data`` as a list of strings; stops silently at a torn tail."""
    position, size = 0, len(data)
    while position < size:
        if data[position : position + 1] == b"#":  # an annotation (aof-timestamp-enabled)
            end = data.find(b"\r\n", position)
            if end < 0:
                return
            position = end + 2
            continue
        if data[position : position + 1] != b"*":
            return
        end = data.find(b"\r\n", position)
        if end < 0:
            return
        count = int(data[position + 1 : end])
        position = end + 2
        command: Command = []
        for _ in range(count):
            end = data.find(b"\r\n", position)
            if end < 0 or data[position : position + 1] != b"$":
                return
            length = int(data[position + 1 : end])
            start = end + 2
            if start + length + 2 > size:
                return
            command.append(data[start : start + length].decode("utf-8", errors="replace"))
            position = start + length + 2
        yield command


def transactions(commands: Iterator[Command]) -> Iterator[list[Command]]:
    """Group commands into what was applied together: a ``MULTI``..``EXEC`` block, or one command alone.
    ``SELECT`` is dropped; a ``MULTI`` without ``EXEC`` at the end is dropped, as Redis does on load."""
    block: list[Command] | None = None
    for command in commands:
        name = command[0].upper() if command else ""
        if name == "SELECT":
            continue
        if name == "MULTI":
            block = []
        elif name == "EXEC":
            if block is not None:
                yield block
            block = None
        elif block is not None:
            block.append(command)
        else:
            yield [command]


def read_transactions(data_dir: Path) -> Iterator[list[Command]]:
    """Every transaction Redis applied, oldest first, from the AOF in ``data_dir``."""
    for path in aof_files(data_dir):
        yield from transactions(parse_commands(path.read_bytes()))
