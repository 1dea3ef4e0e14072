"""Running one job's target with a hard timeout: callables in a child process, commands as processes.

A hung or crashing job cannot take the worker down: a callable runs in a long-lived child process (started
by a fork server, reused from run to run) that is terminated (SIGTERM, then SIGKILL after a grace) on
timeout or cancellation and replaced. ``ThreadExecutor`` is the fast mode: the callable runs in the worker
thread itself, so a timeout is recorded but cannot be enforced.
"""

from __future__ import annotations

import codecs
import contextlib
import itertools
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import IO, Any, Protocol

from beatd.targets import TargetError
from beatd.worker.child import call_target, serve, takes_context
from beatd.worker.lifeline import FORK_SERVER, GroupWatcher, stop_child
from beatd.worker.output import Sink

__all__ = ["ChildExecutor", "Executor", "Outcome", "ThreadExecutor", "run_command"]

READ_SIZE = 65536
"""Bytes read from a command's output file at a time."""

POLL = 0.05
"""How often (s) a waiting run checks for timeout and cancellation."""

MESSAGES_PER_LOOK = 64
"""Most output messages of a child passed on between two checks for timeout and cancellation (each at most
about ``OUTPUT_BATCH_CHARS``: 256 KiB per look)."""

READS_PER_LOOK = 16
"""Most ``READ_SIZE`` blocks read from one of a command's output files per look while it runs (1 MiB): a
command writing faster than the worker reads is still timed out and cancelled."""


@dataclass
class Outcome:
    """How one attempt ended: ``succeeded``, ``failed``, ``timeout`` or ``cancelled`` (``reason`` says why)."""

    status: str
    result: Any = None
    result_truncated: bool = False
    error: dict[str, str] | None = None
    exit_code: int | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Executor(Protocol):
    """Runs callable tasks (see :func:`beatd.worker.child.call_target`), sending what they write to ``output``."""

    def run(
        self, task: dict[str, Any], timeout: float, stop: threading.Event, kill_grace: float, output: Sink
    ) -> Outcome: ...

    def wants_context(self, target: str, pythonpath: list[str]) -> bool:
        """Whether the task's ``context`` may be used (when not, the worker need not work it out)."""
        ...

    def retire(self) -> None:
        """The job code on disk may have changed (reload): later runs must import it afresh where they can."""
        ...

    def close(self) -> None: ...


class ThreadExecutor:
    """Fast mode: call the target in this thread. Timeouts are recorded, not enforced."""

    def run(
        self, task: dict[str, Any], timeout: float, stop: threading.Event, kill_grace: float, output: Sink
    ) -> Outcome:
        """Call the target and report; a run longer than ``timeout`` is recorded as ``timeout``."""
        started = time.monotonic()
        outcome = _outcome(call_target(task, output))
        if time.monotonic() - started > timeout:
            return Outcome("timeout", reason=f"ran past its timeout of {timeout:g}s (thread isolation cannot stop it)")
        return outcome

    def wants_context(self, target: str, pythonpath: list[str]) -> bool:
        """Whether the target takes a context (it is imported here anyway); True when it cannot be imported."""
        try:
            return takes_context(target, tuple(pythonpath))
        except TargetError:
            return True

    def retire(self) -> None:
        """Nothing to do: code imported in the worker stays (a code change needs a restart)."""

    def close(self) -> None:
        """Nothing to release."""


class ChildExecutor:
    """Process isolation: one reusable child process; replaced after a timeout, cancellation or crash, and
    retired after a reload (:meth:`retire`) so later runs import the job code on disk then.

    Children are forked by the fork server, never by the worker: the worker's own modules (it imports no job
    code in this mode) cannot leak into them, and a fresh child imports each job module anew."""

    _context = FORK_SERVER

    def __init__(self) -> None:
        self._process: Any = None
        self._connection: Connection | None = None
        self._lock = threading.Lock()  # run() in the runner thread, retire() from the reload
        self._busy = False
        self._stale = False

    def wants_context(self, target: str, pythonpath: list[str]) -> bool:
        """Always: the target is imported in the child only."""
        return True

    def retire(self) -> None:
        """Reload: the child may hold old job code. An idle child stops now; a busy one finishes its run and
        stops then. Every run that starts after this call gets a fresh child."""
        with self._lock:
            self._stale = True
            if not self._busy:
                self._retire_stale()

    def run(
        self, task: dict[str, Any], timeout: float, stop: threading.Event, kill_grace: float, output: Sink
    ) -> Outcome:
        """Send the task to the child and wait for its answer (passing on what it writes meanwhile), the
        timeout, or ``stop``."""
        with self._lock:
            self._retire_stale()
            self._busy = True
        try:
            return self._run(task, timeout, stop, kill_grace, output)
        finally:
            with self._lock:
                self._busy = False
                self._retire_stale()

    def _retire_stale(self) -> None:
        """Under the lock: stop the child if a reload retired it."""
        if self._stale:
            self._stale = False
            self.close()

    def _run(
        self, task: dict[str, Any], timeout: float, stop: threading.Event, kill_grace: float, output: Sink
    ) -> Outcome:
        connection = self._ensure_child()
        try:
            connection.send(task)
        except (OSError, ValueError) as error:
            self._discard(kill_grace)
            return Outcome("failed", error={"type": "ChildError", "message": f"could not reach child: {error}"})
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            wait = max(0.0, min(POLL, remaining))
            # At most MESSAGES_PER_LOOK messages between checks: a child that writes as fast as it is read must
            # still be timed out and cancelled.
            for _ in range(MESSAGES_PER_LOOK):
                try:
                    if not connection.poll(wait):
                        break
                    reply = connection.recv()
                except (EOFError, OSError):
                    code = self._discard(kill_grace)
                    message = f"the job's child process died (exit code {code})"
                    return Outcome("failed", error={"type": "ChildDied", "message": message, "traceback": ""})
                if "output" not in reply:
                    return _outcome(reply)
                for stream, text in reply["output"]:
                    output(stream, text)
                wait = 0.0
            if stop.is_set():
                self._discard(kill_grace)
                return Outcome("cancelled")
            if remaining <= 0:
                self._discard(kill_grace)
                return Outcome("timeout", reason=f"terminated after its timeout of {timeout:g}s")

    def close(self) -> None:
        """Stop the child."""
        if self._connection is not None:
            with contextlib.suppress(OSError, ValueError):
                self._connection.send(None)
        self._discard(1.0)

    def _ensure_child(self) -> Connection:
        if self._process is None or not self._process.is_alive():
            self._discard(0.1)
            parent, child = self._context.Pipe(duplex=True)
            process = self._context.Process(target=serve, args=(child,), daemon=True, name="beatd-job")
            try:
                process.start()
            except BaseException:
                parent.close()
                raise
            finally:
                child.close()
            # only a started child is kept: a later _discard joins it (a reload's retire() included)
            self._process, self._connection = process, parent
        assert self._connection is not None
        return self._connection

    def _discard(self, kill_grace: float) -> int | None:
        process, self._process = self._process, None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        return None if process is None else stop_child(process, kill_grace)


def run_command(
    argv: list[str], env: dict[str, str], cwd: str | None, timeout: float, stop: threading.Event, kill_grace: float,
    output: Sink,
) -> Outcome:  # fmt: skip
    """Run ``argv`` (no shell; a shell job's argv is ``[/bin/sh, -c, text]``) in a process group of its own,
    led by a watcher that kills the group if the worker dies (see :mod:`beatd.worker.lifeline`). Its stdout and
    stderr go to files that are followed while it runs (a file, unlike a pipe, never blocks the command nor
    keeps the run waiting for a background grandchild that holds it open) and handed to ``output``."""
    try:
        watcher = GroupWatcher()
    except OSError as error:
        return _not_started(error)
    try:
        return _run_in_group(argv, env, cwd, timeout, stop, kill_grace, watcher.group, output)
    finally:
        watcher.close()


def _run_in_group(
    argv: list[str], env: dict[str, str], cwd: str | None, timeout: float, stop: threading.Event,
    kill_grace: float, group: int, output: Sink,
) -> Outcome:  # fmt: skip
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        followed = (_Follower(out, "stdout", output), _Follower(err, "stderr", output))
        try:
            process = subprocess.Popen(
                argv, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, process_group=group
            )
        except OSError as error:
            return _not_started(error)
        deadline = time.monotonic() + timeout
        status: str | None = None
        while process.poll() is None:
            if stop.is_set():
                status = "cancelled"
            elif time.monotonic() >= deadline:
                status = "timeout"
            if status is not None:
                _stop_group(process, group, kill_grace)
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(POLL)
            for follower in followed:
                follower.pump()
        code = process.wait()
        for follower in followed:
            follower.pump(final=True)
        outcome = Outcome(status or ("succeeded" if code == 0 else "failed"), exit_code=code)
    if status == "timeout":
        outcome.reason = f"terminated after its timeout of {timeout:g}s"
    elif outcome.status == "failed":
        outcome.error = {"type": "ExitCode", "message": f"exit code {code}", "traceback": ""}
    return outcome


def _not_started(error: OSError) -> Outcome:
    return Outcome("failed", error={"type": type(error).__name__, "message": str(error), "traceback": ""})


def _stop_group(process: subprocess.Popen[bytes], group: int, kill_grace: float) -> None:
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(kill_grace)
            return
        except subprocess.TimeoutExpired:
            continue


class _Follower:
    """Reads what a command has written to one of its output files since the last look. ``os.pread`` leaves
    the file offset alone: the command shares it (its writes go where the offset is)."""

    def __init__(self, file: IO[bytes], stream: str, output: Sink) -> None:
        self.fd = file.fileno()
        self.stream = stream
        self.output = output
        self.offset = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def pump(self, final: bool = False) -> None:
        """Pass on what was written since the last look: at most ``READS_PER_LOOK`` blocks while the command
        runs; after it ended (``final``) up to the file's size now, not what a background process it left
        behind writes meanwhile (the run would never end)."""
        end = os.fstat(self.fd).st_size if final else None
        for _ in range(READS_PER_LOOK) if end is None else itertools.count():
            size = READ_SIZE if end is None else min(READ_SIZE, end - self.offset)
            data = os.pread(self.fd, size, self.offset) if size > 0 else b""
            if not data:
                break
            self.offset += len(data)
            if text := self.decoder.decode(data):
                self.output(self.stream, text)
        if final and (text := self.decoder.decode(b"", final=True)):
            self.output(self.stream, text)


def _outcome(reply: dict[str, Any]) -> Outcome:
    return Outcome(
        status=reply["status"],
        result=reply.get("result"),
        result_truncated=bool(reply.get("result_truncated")),
        error=reply.get("error"),
    )
