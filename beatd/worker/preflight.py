"""Before a worker serves a config (at start and on reload): every ``call`` target of the jobs on its queues
must import, or the worker refuses the config with a located problem per job.

Where the check imports decides what it sees:

- **process isolation**: in a fresh child process started by the same fork server as the job children, one
  target after another. The worker itself never imports job code, so each check (and each run in a fresh
  child after a reload) sees the code on disk now.
- **thread isolation**: in the worker itself, where the jobs run. Python keeps a module once imported, so a
  reload cannot load new code; :class:`CodeWatch` names the job modules whose files changed since the worker
  imported them, so the reload can say that those changes need a restart.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from beatd import defaults
from beatd.config import Config
from beatd.errors import Problem
from beatd.targets import TargetError, resolve_call
from beatd.worker.lifeline import die_with_parent, release_fork_server

__all__ = ["CodeWatch", "TargetGate", "served_calls", "unimportable"]

log = logging.getLogger("beatd.worker")


def served_calls(config: Config, queues: Iterable[str]) -> dict[str, str]:
    """``{job: call target}`` of every callable job of ``config`` on ``queues`` (enabled or not: a disabled job
    can still be triggered by hand)."""
    served = set(queues)
    return {name: spec.call for name, spec in config.jobs.items() if spec.call is not None and spec.queue in served}


@dataclass
class TargetGate:
    """What a worker does with jobs whose target cannot be imported, at start and on each reload: refuse the
    config, or (``allow_missing``) warn once per job and target and serve the rest."""

    isolation: str
    allow_missing: bool = False
    watch: CodeWatch | None = None
    warned: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def of(cls, isolation: str, allow_missing: bool) -> TargetGate:
        """The gate of a worker running callables with ``isolation``."""
        return cls(isolation, allow_missing, CodeWatch() if isolation == "thread" else None)

    def refused(self, config: Config, queues: Iterable[str]) -> list[Problem]:
        """The problems that make ``config`` unusable for a worker on ``queues`` (none with ``allow_missing``:
        each job not yet warned about is logged as a warning instead)."""
        problems = unimportable(config, queues, self.isolation, self.watch)
        if not self.allow_missing:
            return list(problems.values())
        for job, problem in problems.items():
            key = (job, config.jobs[job].call or "")
            if key not in self.warned:
                self.warned.add(key)
                log.warning("%s (--allow-missing: its runs fail until it can be imported)", problem.as_warning())
        return []


def unimportable(
    config: Config, queues: Iterable[str], isolation: str, watch: CodeWatch | None = None
) -> dict[str, Problem]:
    """``{job: Problem}`` for each job on ``queues`` whose target cannot be imported, located at its ``call:``
    value; imported where its runs will import it (see the module). ``watch`` (thread isolation) explains a
    target missing from a module whose file changed since it was imported."""
    calls = served_calls(config, queues)
    pythonpath = [str(entry) for entry in config.pythonpath]
    if isolation == "process":
        errors = _probe_in_child(calls, pythonpath)
    else:
        errors = _probe_here(calls, pythonpath)
        if watch is not None:
            watch.note(calls.values())
            changed = set(watch.changed())
            for job, error in errors.items():
                if calls[job].partition(":")[0] in changed:
                    errors[job] = (
                        f"{error}; its file changed since the worker imported it, and under thread isolation "
                        "code changes need a restart"
                    )
    return {job: config.problem(job, "call", error) for job, error in errors.items()}


def _probe_here(calls: dict[str, str], pythonpath: list[str]) -> dict[str, str]:
    errors = {}
    for job, target in calls.items():
        try:
            resolve_call(target, [Path(entry) for entry in pythonpath])
        except TargetError as error:
            errors[job] = str(error)
    return errors


_CONTEXT = multiprocessing.get_context("forkserver")

START_TIMEOUT = 60.0
"""How long (s) the check's child may take to start (the first one starts the fork server too) before every
target is reported as not checked."""


def _probe_in_child(calls: dict[str, str], pythonpath: list[str]) -> dict[str, str]:
    """Import each target in a fresh child process; a target whose import ends the child or hangs is blamed
    and the rest are checked in another child."""
    errors: dict[str, str] = {}
    left = list(calls.items())
    timeout = defaults.TARGET_CHECK_TIMEOUT.total_seconds()
    while left:
        parent, child = _CONTEXT.Pipe(duplex=False)
        process = _CONTEXT.Process(
            target=_probe, args=(child, [target for _, target in left], pythonpath), daemon=True, name="beatd-check"
        )
        process.start()
        child.close()
        try:
            if not _started(parent, process, START_TIMEOUT):
                code = process.exitcode
                for job, _ in left:
                    errors[job] = f"not checked: the process importing job code did not start (exit code {code})"
                break
            while left:
                if not parent.poll(timeout):
                    job, target = left.pop(0)
                    errors[job] = f"cannot import {target!r}: importing it did not finish within {timeout:g}s"
                    break
                try:
                    answer = parent.recv()
                except (EOFError, OSError):
                    process.join(5)
                    job, target = left.pop(0)
                    code = process.exitcode
                    errors[job] = f"cannot import {target!r}: importing it ended the process (exit code {code})"
                    break
                job, _ = left.pop(0)
                if answer is not None:
                    errors[job] = str(answer)
        finally:
            parent.close()
            if process.is_alive():
                process.kill()
            process.join(5)
    return errors


def _started(connection: Connection, process: Any, timeout: float) -> bool:
    """Whether the check's child said it runs (so a death after that is the fault of a target's import)."""
    try:
        return bool(connection.poll(timeout) and connection.recv() == "ready")
    except (EOFError, OSError):
        process.join(5)
        return False


def _probe(connection: Connection, targets: list[str], pythonpath: list[str]) -> None:
    """In the check's child: say it runs, then import each target in turn and send None or why it cannot be
    imported."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    release_fork_server()
    connection.send("ready")
    for target in targets:
        try:
            resolve_call(target, [Path(entry) for entry in pythonpath])
            answer: str | None = None
        except TargetError as error:
            answer = str(error)
        except BaseException as error:  # anything else is a bug of ours, but it must not end the check
            answer = f"cannot import {target!r}: {type(error).__name__}: {error}"
        connection.send(answer)
    connection.close()


@dataclass
class CodeWatch:
    """Thread isolation: the modification time of each job module's file when the worker first saw it
    imported, to name the modules whose files changed since (their new code runs only after a restart)."""

    seen: dict[str, tuple[str, int]] = field(default_factory=dict)

    def note(self, targets: Iterable[str]) -> None:
        """Remember the file and modification time of each imported module of ``targets`` not seen before."""
        for target in targets:
            name = target.partition(":")[0]
            module: Any = sys.modules.get(name)
            path = getattr(module, "__file__", None)
            if name in self.seen or not isinstance(path, str):
                continue
            with contextlib.suppress(OSError):
                self.seen[name] = (path, Path(path).stat().st_mtime_ns)

    def changed(self) -> list[str]:
        """The modules noted whose file changed (or went away) since, sorted."""
        found = []
        for name, (path, mtime) in self.seen.items():
            try:
                now = Path(path).stat().st_mtime_ns
            except OSError:
                now = -1
            if now != mtime:
                found.append(name)
        return sorted(found)
