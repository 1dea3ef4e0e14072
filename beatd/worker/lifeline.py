"""How a job's processes die with their worker, even when the worker is killed with SIGKILL.

Nothing a dying worker runs can be relied on, so each job process is tied to it by something the kernel
does when the worker is gone:

- **Callable children** are forked by the multiprocessing fork server. Each child asks the kernel for
  SIGKILL when its parent, the fork server, exits (``PR_SET_PDEATHSIG``; the fork server forks from its only
  thread, so the signal is not fired early by a thread ending). The fork server exits as soon as every holder
  of its "alive" pipe is gone: the worker and, by default, every child. Each child closes its copy
  (:func:`release_fork_server`), so the worker's death alone ends the fork server, and with it every child.
- **Commands** run in their own process group, led by a watcher (:class:`GroupWatcher`): a ``/bin/sh`` that
  reads a pipe only the worker writes to. At the end of a run the worker writes a line and the watcher exits;
  when the worker dies the pipe reads end-of-file and the watcher kills its whole group (the command, the
  shell's children and grandchildren, itself) with SIGKILL. The watcher is the worker's own child, so it is
  always reaped, and the command itself runs unwrapped (its pid, exit code and signal dispositions as ever).

Limits: a process that leaves the group (``setsid``, ``setpgid``, GNU ``timeout`` without ``--foreground``)
or a callable's own subprocesses are not followed. ``PR_SET_PDEATHSIG`` exists on Linux only: elsewhere
:func:`die_with_parent` does nothing, commands are still covered (the watcher is POSIX sh), and a callable
child outlives a killed worker until its job ends. Under systemd, ``KillMode=mixed`` also kills the cgroup.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import subprocess
import sys
from multiprocessing import forkserver
from typing import Any

__all__ = ["FORK_SERVER", "GroupWatcher", "die_with_parent", "enter_child", "release_fork_server", "stop_child"]

FORK_SERVER = multiprocessing.get_context("forkserver")
"""The start method of every callable child (job children and target checks): forked by the fork server, never
by the worker, so the worker's own modules cannot leak into them."""

_PR_SET_PDEATHSIG = 1

WATCHER = "trap '' HUP INT TERM; read _ || kill -s KILL 0"
"""The watcher's script: a line on stdin is a normal end; end-of-file (the worker is gone) kills the group.
It ignores the signals a timeout or a terminal sends, so it outlasts the group it guards."""


def die_with_parent(signum: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``signum`` to this process when its parent exits; False where that cannot be
    done (not Linux, no prctl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def release_fork_server() -> None:
    """In a child of the fork server: close this child's copy of the fork server's "alive" pipe, so the fork
    server exits when the worker does rather than when the last child does. A child that starts processes
    with the fork server itself then starts a fresh one."""
    server: object = getattr(forkserver, "_forkserver", None)
    alive = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(alive, int):
        with contextlib.suppress(OSError):
            os.close(alive)
        server._forkserver_alive_fd = None  # type: ignore[attr-defined]
        server._forkserver_address = None  # type: ignore[attr-defined]


def enter_child() -> None:
    """First thing in a child of the fork server: ignore SIGINT (a Ctrl-C in a terminal reaches the whole
    foreground process group, and it is the worker that decides what stops), tie this child's life to the
    worker's, and only then release the fork server (which may then exit at once)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    release_fork_server()


def stop_child(process: Any, kill_grace: float) -> int | None:
    """End a started child process (a ``multiprocessing`` process): SIGTERM, SIGKILL after ``kill_grace``
    seconds, then reap it; its exit code, None if it could not be reaped within 5 s."""
    if process.is_alive():
        process.terminate()
        process.join(kill_grace)
        if process.is_alive():
            process.kill()
    process.join(5)
    return int(process.exitcode) if process.exitcode is not None else None


class GroupWatcher:
    """The leader of a command's process group: it kills the group when the worker dies (see the module)."""

    def __init__(self) -> None:
        read_end, self._write_end = os.pipe()
        try:
            self._process = subprocess.Popen(
                ["/bin/sh", "-c", WATCHER],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                process_group=0,
            )
        except OSError:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)

    @property
    def group(self) -> int:
        """The process group id to start the command in (``Popen(process_group=...)``) and to signal."""
        return self._process.pid

    def close(self) -> None:
        """The run is over: let the watcher exit without killing anything, and reap it."""
        with contextlib.suppress(OSError):
            os.write(self._write_end, b"\n")
        os.close(self._write_end)
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
