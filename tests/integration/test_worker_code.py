"""Job code on disk and a real `beatd worker`: SIGHUP deploys new code (process isolation) or says it needs a
restart (thread isolation); a target that cannot be imported is refused at start and on reload, located."""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from beatd.config import Isolation, load_config
from beatd.worker.executor import ChildExecutor
from beatd.worker.registry import Setup
from beatd.worker.target_check import CheckError, unimportable
from tests.conftest import REPO, WriteFiles
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import runs
from tests.integration.test_beat_operations import _receive_until
from tests.integration.test_worker import enqueue, lines, statuses
from tests.integration.test_worker_processes import running
from tests.redis_server import RedisServer

MODULE = "deployed_jobs"

VERSION_1 = """
import json, os, time
from pathlib import Path

VERSION = "v1"

def first():
    return {"version": VERSION, "pid": os.getpid()}

def hold(log, release):
    with open(log, "a") as out:
        out.write(json.dumps({"pid": os.getpid()}) + "\\n")
    while not Path(release).exists():
        time.sleep(0.02)
    return {"version": VERSION, "pid": os.getpid()}
"""

VERSION_2 = (
    VERSION_1.replace('VERSION = "v1"', 'VERSION = "v2, edited"')
    + """
def second():
    return {"version": "v2, added", "pid": os.getpid()}
"""
)


HANGS = "import pathlib, time\npathlib.Path(__file__ + '.started').touch()\ntime.sleep(3600)\n"
"""A job module whose import never ends (it waits on something that does not come); it leaves a file
``hangs_at_import.py.started`` next to itself once its import began."""


def setup(tmp_path: Path, server: RedisServer, namespace: str, jobs: str, check_timeout: str = "60s") -> Path:
    """A job module (version 1) and one that hangs at import (``hangs_at_import``) in their own directory, and
    a worker config whose pythonpath holds it."""
    code = tmp_path / "code"
    code.mkdir()
    (code / f"{MODULE}.py").write_text(VERSION_1)
    (code / "hangs_at_import.py").write_text(HANGS)
    path = tmp_path / "beatd.yaml"
    body = textwrap.indent(textwrap.dedent(jobs).strip("\n"), "  ")
    path.write_text(
        f"redis: {{url: '{server.url}'}}\nnamespace: {namespace}\npythonpath: ['{REPO}', '{code}']\n"
        f"worker: {{kill_grace: 500ms, concurrency: 2, target_check_timeout: {check_timeout}}}\njobs:\n{body}\n"
    )
    return path


def deploy_version_2(config: Path, added_jobs: str = "") -> None:
    """Edit the job module on disk (a new body and a new function) and declare ``added_jobs`` in the YAML."""
    (config.parent / "code" / f"{MODULE}.py").write_text(VERSION_2)
    config.write_text(config.read_text() + textwrap.indent(textwrap.dedent(added_jobs).strip("\n") + "\n", "  "))


def results(server: RedisServer, namespace: str, job: str) -> list[Any]:
    """Results of ``job``'s succeeded runs, oldest first."""
    found = sorted(runs(server.client(), namespace, job), key=lambda record: record["scheduled_at"])
    return [record["result"] for record in found if record["status"] == "succeeded"]


def audit_events(server: RedisServer, namespace: str, event: str) -> list[dict[str, Any]]:
    """Audit records of ``event``, oldest first."""
    entries = server.client().xrange(f"{namespace}:audit")
    return [json.loads(fields["record"]) for _, fields in entries if fields["event"] == event]


def position(config: Path, job: str, value: str) -> str:
    """``FILE:LINE:COL`` of ``value`` on the line that declares ``job``."""
    for number, line in enumerate(config.read_text().splitlines(), 1):
        if line.strip().startswith(f"{job}:"):
            return f"{config}:{number}:{line.index(value) + 1}"
    raise AssertionError(f"{job} not in {config}")


def test_sighup_runs_new_and_edited_code_in_fresh_children(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Process isolation: after the module is edited on disk, a new function is declared and SIGHUP is sent,
    the new job and the edited one run the new code in fresh children; the idle child is retired at once, and
    the run busy during the reload finishes with the code it started with before its child is retired."""
    hold_log, release = tmp_path / "hold.jsonl", tmp_path / "release"
    config = setup(tmp_path, shared_redis, namespace, f"""
        first: {{call: {MODULE}:first, every: 1h}}
        hold: {{call: {MODULE}:hold, every: 1h, timeout: 1m, kwargs: {{log: '{hold_log}', release: '{release}'}}}}
    """)  # fmt: skip
    worker = daemons("worker", "-c", str(config), "--isolation", "process", name="worker")
    worker.wait_log("consuming default")
    enqueue(config, "first")
    [before] = wait_for(lambda: results(shared_redis, namespace, "first"), timeout=30, what="first ran")
    assert before["version"] == "v1"
    enqueue(config, "hold")
    busy = wait_for(lambda: lines(hold_log), timeout=30, what="hold started")[0]["pid"]
    deploy_version_2(config, f"second: {{call: {MODULE}:second, every: 1h}}")
    worker.signal(signal.SIGHUP)
    worker.wait_log("reloaded ")
    if before["pid"] != busy:  # the idle runner's child imported v1: it stops now
        wait_for(lambda: not running(before["pid"]), timeout=60, what="the idle child retired")
    assert running(busy)
    enqueue(config, "first")
    enqueue(config, "second")
    wait_for(lambda: len(results(shared_redis, namespace, "first")) == 2, timeout=30, what="first ran again")
    [added] = wait_for(lambda: results(shared_redis, namespace, "second"), timeout=30, what="second ran")
    edited = results(shared_redis, namespace, "first")[1]
    assert (edited["version"], added["version"]) == ("v2, edited", "v2, added")
    assert {edited["pid"], added["pid"]}.isdisjoint({before["pid"], busy})
    release.touch()
    [held] = wait_for(lambda: results(shared_redis, namespace, "hold"), timeout=30, what="hold finished")
    assert held == {"version": "v1", "pid": busy}
    wait_for(lambda: not running(busy), timeout=60, what="the busy child retired after its run")
    assert statuses(shared_redis, namespace, "second") == ["succeeded"]
    [reload] = audit_events(shared_redis, namespace, "reload")
    assert reload["job_code"] == "reloaded" and "runs from now on import the job code on disk" in worker.log()


def test_thread_isolation_reload_says_code_changes_need_a_restart(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Thread isolation: a reload after the module was edited names it in the log and the audit record as
    needing a restart (the old code goes on running); declaring its new function is a rejected reload that
    says why."""
    config = setup(tmp_path, shared_redis, namespace, f"""
        first: {{call: {MODULE}:first, every: 1h}}
    """)  # fmt: skip
    worker = daemons("worker", "-c", str(config), "--isolation", "thread", name="worker")
    worker.wait_log("consuming default")
    deploy_version_2(config)
    worker.signal(signal.SIGHUP)
    worker.wait_log(rf"job code changed on disk \({MODULE}\) but runs in the worker itself \(thread isolation\): "
                    "code changes need a restart")  # fmt: skip
    [reload] = wait_for(lambda: audit_events(shared_redis, namespace, "reload"), what="the reload audited")
    assert (reload["job_code"], reload["changed_modules"]) == ("restart required", [MODULE])
    enqueue(config, "first")
    [result] = wait_for(lambda: results(shared_redis, namespace, "first"), timeout=30, what="first ran")
    assert result["version"] == "v1"
    deploy_version_2(config, f"second: {{call: {MODULE}:second, every: 1h}}")
    worker.signal(signal.SIGHUP)
    where = position(config, "second", f"{MODULE}:second")
    worker.wait_log(
        rf"reload rejected: {where}: jobs\.second\.call: cannot import '{MODULE}:second': module '{MODULE}' has "
        r"no attribute 'second'; its file changed since the worker imported it, and under thread isolation "
        "code changes need a restart"
    )
    [failed] = wait_for(lambda: audit_events(shared_redis, namespace, "reload-failed"), what="failure audited")
    assert [problem.split(": ")[1] for problem in failed["problems"]] == ["jobs.second.call"]


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_worker_refuses_to_start_with_an_unimportable_target(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, isolation: str
) -> None:
    """A worker whose queues have jobs it cannot import exits 2 before serving anything, naming each job at
    its ``call:`` value (FILE:LINE:COL), without a traceback; jobs on queues it does not serve are not checked."""
    config = setup(tmp_path, shared_redis, namespace, """
        good: {call: tests.worker_jobs:noop, every: 1h}
        no_module: {call: no_such_module:run, every: 1h}
        no_function: {call: tests.worker_jobs:no_such_function, every: 1h}
        elsewhere: {call: no_such_module:run, every: 1h, queue: other}
    """)  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "beatd", "worker", "-c", str(config), "--queues", "default", "--isolation", isolation],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-3:] == [
        f"{position(config, 'no_module', 'no_such_module')}: jobs.no_module.call: cannot import "
        "'no_such_module:run': no module named 'no_such_module' (check pythonpath)",
        f"{position(config, 'no_function', 'tests.worker_jobs')}: jobs.no_function.call: cannot import "
        "'tests.worker_jobs:no_such_function': module 'tests.worker_jobs' has no attribute 'no_such_function'",
        "beatd: 2 problems found; nothing was applied",
    ]
    assert "Traceback" not in done.stderr and "elsewhere" not in done.stderr
    assert not shared_redis.client().exists(f"{namespace}:queue:default")


def test_allow_missing_warns_once_per_job_and_serves_the_rest(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """With --allow-missing a worker warns once per unimportable job (at start, and on a reload only for a
    newly missing one), runs the importable jobs, and takes a reload that names another missing target."""
    config = setup(tmp_path, shared_redis, namespace, """
        good: {call: tests.worker_jobs:noop, every: 1h}
        broken: {call: no_such_module:run, every: 1h, retries: 0}
    """)  # fmt: skip
    worker = daemons("worker", "-c", str(config), "--allow-missing", name="worker")
    worker.wait_log("consuming default")
    enqueue(config, "broken")
    enqueue(config, "good")
    wait_for(lambda: statuses(shared_redis, namespace, "good") == ["succeeded"], timeout=30, what="good ran")
    wait_for(lambda: "failed" in statuses(shared_redis, namespace, "broken"), timeout=30, what="broken failed")
    config.write_text(config.read_text() + "  also_broken: {call: tests.worker_jobs:gone, every: 1h}\n"
                      "  added: {call: tests.worker_jobs:noop, every: 1h}\n")  # fmt: skip
    worker.signal(signal.SIGHUP)
    worker.wait_log("reloaded ")
    enqueue(config, "added")
    wait_for(lambda: statuses(shared_redis, namespace, "added") == ["succeeded"], timeout=30, what="added ran")
    warnings = [line for line in worker.log().splitlines() if "--allow-missing: its runs fail" in line]
    assert len(warnings) == 2, warnings
    assert f"{position(config, 'broken', 'no_such_module')}: warning: jobs.broken.call: cannot import" in warnings[0]
    assert "jobs.also_broken.call: cannot import 'tests.worker_jobs:gone'" in warnings[1]


def test_reload_naming_an_unimportable_target_keeps_the_running_config(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A reload whose new config names a target that cannot be imported is rejected, located, counted and
    audited as ``reload-failed``; the worker goes on with the config it had (the job added with it is not
    served)."""
    config = setup(tmp_path, shared_redis, namespace, """
        first: {call: tests.worker_jobs:noop, every: 1h}
    """)  # fmt: skip
    worker = daemons("worker", "-c", str(config), name="worker")
    worker.wait_log("consuming default")
    config.write_text(config.read_text() + "  added: {call: tests.worker_jobs:noop, every: 1h}\n"
                      "  broken: {call: no_such_module:run, every: 1h}\n")  # fmt: skip
    worker.signal(signal.SIGHUP)
    where = position(config, "broken", "no_such_module")
    worker.wait_log(rf"reload rejected: {where}: jobs\.broken\.call: cannot import 'no_such_module:run'")
    [failed] = wait_for(lambda: audit_events(shared_redis, namespace, "reload-failed"), what="failure audited")
    assert failed["problems"][0].startswith(f"{where}: jobs.broken.call: cannot import")
    assert not audit_events(shared_redis, namespace, "reload")
    enqueue(config, "first")
    enqueue(config, "added")
    wait_for(lambda: statuses(shared_redis, namespace, "first") == ["succeeded"], timeout=30, what="first ran")
    client = shared_redis.client()
    wait_for(lambda: client.xlen(f"{namespace}:dead") == 1, what="the added job refused")
    assert "'added' is not declared" in client.xrange(f"{namespace}:dead")[0][1]["reason"]
    assert worker.process is not None and worker.process.poll() is None


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_a_target_whose_import_ends_or_hangs_the_check_process_is_blamed_and_the_check_keeps_its_budget(
    tmp_path: Path, write_files: WriteFiles, isolation: Isolation
) -> None:
    """Both isolations: a module that exits the process at import is reported for its own job (with the exit
    code) and the jobs after it are still checked; one whose import hangs is reported when the whole check's
    budget is spent, the targets after it as not checked, and none of them is imported by the worker."""
    (tmp_path / "exits_at_import.py").write_text("import os\nos._exit(3)\n")
    (tmp_path / "hangs_at_import.py").write_text(HANGS)
    config = load_config(write_files({"beatd.yaml": f"""
        pythonpath: ['{REPO}', '{tmp_path}']
        jobs:
          exits: {{call: exits_at_import:run, every: 1h}}
          fine: {{call: tests.worker_jobs:noop, every: 1h}}
          missing: {{call: tests.worker_jobs:gone, every: 1h}}
          hangs: {{call: hangs_at_import:run, every: 1h}}
          after: {{call: hangs_at_import:other, every: 1h}}
          last: {{call: no_such_module:run, every: 1h}}
    """}), {})  # fmt: skip
    problems = unimportable(Setup.of(config, None), isolation, 12.0)  # generous: children start slowly under load
    assert {job: problem.message for job, problem in problems.items()} == {
        "exits": "cannot import 'exits_at_import:run': importing it ended the process (exit code 3)",
        "missing": "cannot import 'tests.worker_jobs:gone': module 'tests.worker_jobs' has no attribute 'gone'",
        "hangs": "cannot import 'hangs_at_import:run': importing it had not finished when the check's 12s were up",
        "after": "'hangs_at_import:other' not checked (time budget spent)",
        "last": "'no_such_module:run' not checked (time budget spent)",
    }
    assert "hangs_at_import" not in sys.modules and "exits_at_import" not in sys.modules


class _UnstartableContext:
    """A fork server context whose processes cannot start (as when the system is out of processes)."""

    def __init__(self) -> None:
        self.real = multiprocessing.get_context("forkserver")

    def Pipe(self, duplex: bool = True) -> Any:
        return self.real.Pipe(duplex)

    def Process(self, **kwargs: Any) -> Any:
        process = self.real.Process(**kwargs)

        def start() -> None:
            raise OSError(11, "Resource temporarily unavailable")

        process.start = start
        return process


def test_a_child_that_could_not_start_is_not_kept_for_a_later_retire() -> None:
    """Process isolation: when a job's child process cannot start the run fails with that error, and the
    next reload's retire() (and close) go through instead of failing on a process that never started."""

    class Unstartable(ChildExecutor):
        _context = _UnstartableContext()  # type: ignore[assignment]

    executor = Unstartable()
    task = {"target": "tests.worker_jobs:noop", "pythonpath": [str(REPO)]}
    with pytest.raises(OSError, match="Resource temporarily unavailable"):
        executor.run(task, 5.0, threading.Event(), 0.5, lambda stream, text: None)
    executor.retire()
    executor.close()


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_a_module_getattr_that_raises_is_a_located_problem(
    tmp_path: Path, write_files: WriteFiles, isolation: Isolation
) -> None:
    """A module whose ``__getattr__`` raises something else than AttributeError (a lazy import that fails)
    is reported for its job like any import failure, and the jobs after it are still checked."""
    (tmp_path / "lazy_jobs.py").write_text("def __getattr__(name):\n    raise ImportError(f'lazy {name} failed')\n")
    config = load_config(write_files({"beatd.yaml": f"""
        pythonpath: ['{REPO}', '{tmp_path}']
        jobs:
          lazy: {{call: lazy_jobs:run, every: 1h}}
          missing: {{call: tests.worker_jobs:gone, every: 1h}}
    """}), {})  # fmt: skip
    problems = unimportable(Setup.of(config, None), isolation, 30.0)
    assert {job: problem.message for job, problem in problems.items()} == {
        "lazy": "cannot import 'lazy_jobs:run': looking up 'run': ImportError: lazy run failed",
        "missing": "cannot import 'tests.worker_jobs:gone': module 'tests.worker_jobs' has no attribute 'gone'",
    }


def open_files(pid: int) -> int:
    """How many file descriptors process ``pid`` has open."""
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_a_reload_whose_check_cannot_run_is_rejected_and_the_worker_goes_on(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon], isolation: str
) -> None:
    """When the target check itself fails on reload (here: the worker is out of file descriptors, so no pipe
    to a check process can be made), the reload is rejected, unlocated, and the worker serves on."""
    config = setup(tmp_path, shared_redis, namespace, """
        first: {call: tests.worker_jobs:noop, every: 1h}
    """)  # fmt: skip
    worker = daemons("worker", "-c", str(config), "--isolation", isolation, name="worker")
    worker.wait_log("consuming default")
    config.write_text(config.read_text() + "  added: {call: tests.worker_jobs:noop, every: 1h}\n")
    limits = resource.prlimit(worker.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(worker.pid, resource.RLIMIT_NOFILE, (open_files(worker.pid) + 1, limits[1]))
    try:
        worker.signal(signal.SIGHUP)
        worker.wait_log(
            r"reload rejected: call targets not checked: the process importing job code could not start: .*Too many"
            " open files",
            timeout=30,
        )
    finally:
        resource.prlimit(worker.pid, resource.RLIMIT_NOFILE, limits)
    enqueue(config, "first")
    wait_for(lambda: statuses(shared_redis, namespace, "first") == ["succeeded"], timeout=30, what="first ran")
    assert worker.process is not None and worker.process.poll() is None


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_a_target_whose_import_hangs_fails_the_start_within_the_check_timeout(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, isolation: str
) -> None:
    """Both isolations: a worker whose job module hangs at import exits 2 once ``worker.target_check_timeout``
    is spent, naming that job at its ``call:`` value and the jobs not reached as not checked."""
    config = setup(tmp_path, shared_redis, namespace, """
        hangs: {call: hangs_at_import:run, every: 1h}
        after: {call: tests.worker_jobs:noop, every: 1h}
    """, check_timeout="3s")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "beatd", "worker", "-c", str(config), "--isolation", isolation],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-3:] == [
        f"{position(config, 'hangs', 'hangs_at_import')}: jobs.hangs.call: cannot import 'hangs_at_import:run': "
        "importing it had not finished when the check's 3s were up",
        f"{position(config, 'after', 'tests.worker_jobs')}: jobs.after.call: 'tests.worker_jobs:noop' not checked "
        "(time budget spent)",
        "beatd: 2 problems found; nothing was applied",
    ]


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_a_reload_with_hanging_imports_keeps_the_watchdog_fed_and_ends_within_one_budget(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon], isolation: str
) -> None:
    """Both isolations: a reload whose new jobs hang at import sends WATCHDOG=1 while it checks them, is
    rejected once the one budget of the whole check is spent (the target after the hanging one not checked),
    and the worker serves on with the config it had."""
    config = setup(tmp_path, shared_redis, namespace, """
        first: {call: tests.worker_jobs:noop, every: 1h}
    """, check_timeout="3s")  # fmt: skip
    notify_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_socket.bind(str(tmp_path / "notify.sock"))
    notify_socket.settimeout(10)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    worker = daemons("worker", "-c", str(config), "--isolation", isolation, env=env, name="worker")
    _receive_until(notify_socket, "READY=1")
    config.write_text(config.read_text() + "  hangs: {call: hangs_at_import:run, every: 1h}\n"
                      "  also: {call: hangs_at_import:other, every: 1h}\n")  # fmt: skip
    worker.signal(signal.SIGHUP)
    _receive_until(notify_socket, "RELOADING=1")
    during = _receive_until(notify_socket, "READY=1")
    assert during.count("WATCHDOG=1") >= 3, during
    worker.wait_log(r"reload rejected: .*jobs\.hangs\.call: cannot import 'hangs_at_import:run': importing it had "
                    r"not finished when the check's 3s were up")  # fmt: skip
    worker.wait_log(r"reload rejected: .*jobs\.also\.call: 'hangs_at_import:other' not checked \(time budget spent\)")
    enqueue(config, "first")
    wait_for(lambda: statuses(shared_redis, namespace, "first") == ["succeeded"], timeout=30, what="first ran")
    notify_socket.close()


@pytest.mark.parametrize("when", ["start", "reload"])
def test_a_stop_during_a_hanging_target_check_is_honoured(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon], when: str
) -> None:
    """Thread isolation: SIGTERM while the target check waits on an import that hangs stops the worker at
    once (exit 0), at start and on reload, instead of after the check's 60 s."""
    hangs, first = "hangs: {call: hangs_at_import:run, every: 1h}", "first: {call: tests.worker_jobs:noop, every: 1h}"
    config = setup(tmp_path, shared_redis, namespace, hangs if when == "start" else first)
    worker = daemons("worker", "-c", str(config), "--isolation", "thread", name="worker")
    if when == "reload":
        worker.wait_log("consuming default")
        config.write_text(config.read_text() + f"  {hangs}\n")
        worker.signal(signal.SIGHUP)
    started = tmp_path / "code" / "hangs_at_import.py.started"
    wait_for(started.exists, timeout=30, what="the check importing")
    assert worker.stop(timeout=20) == 0
    assert "Traceback" not in worker.log()


def test_a_check_that_cannot_run_is_a_check_error_not_a_problem_of_the_targets(
    tmp_path: Path, write_files: WriteFiles
) -> None:
    """When no check process can be made (out of file descriptors) or it does not start within the budget,
    the check raises CheckError saying so (exit 1 at start, an unlocated rejection on reload) instead of
    blaming each target; a start that takes too long is named a timeout."""
    config = load_config(write_files({"beatd.yaml": f"""
        pythonpath: ['{REPO}']
        jobs:
          fine: {{call: tests.worker_jobs:noop, every: 1h}}
    """}), {})  # fmt: skip
    setup = Setup.of(config, None)
    with pytest.raises(CheckError, match=r"^the process importing job code did not start within 0\.001s$"):
        unimportable(setup, "process", 0.001)
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files(os.getpid()) + 1, limits[1]))
    try:
        with pytest.raises(CheckError, match=r"^the process importing job code could not start: .*Too many open"):
            unimportable(setup, "thread", 30.0)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)
