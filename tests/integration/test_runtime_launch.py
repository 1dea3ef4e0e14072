"""A beat launched onto many stored runtime jobs: it reads them all before it contends for the lease, and leads
once every one is read."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from beatd import defaults
from beatd.beat import Beat
from beatd.clock import SystemClock
from beatd.identity import Identity
from beatd.keys import Keys
from beatd.runtime_follow import RuntimeFollower
from beatd.runtime_jobs import RuntimeJobs
from beatd.store import Store, connect
from beatd.store.jobs import JobStore
from tests.integration.conftest import Daemon
from tests.integration.test_runtime_jobs import _config
from tests.redis_server import RedisServer


def test_a_beat_takes_the_lease_once_it_has_read_the_stored_runtime_jobs(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A beat launched onto runtime jobs that take several pages to read becomes leader once its read is
    complete (a replica still reading never holds the lease a standby that read them all could take), and its
    leading line counts every job."""
    config = _config(tmp_path / "beatd.yaml", shared_redis, namespace)
    count = 3 * defaults.RUNTIME_CHANGES_PER_POLL
    jobs = RuntimeJobs(config, JobStore(connect(config.settings.redis), Keys(namespace)), actor="tester")
    jobs.put_many({f"c{index}": {"every": "1h", "call": "tests.worker_jobs:noop"} for index in range(count)})
    beat = daemons("beat", "-c", str(config.path))
    beat.wait_log(rf"leading {count + 1} jobs \({count + 1} new", timeout=60)
    log = beat.log()
    became, read = re.search(r"became leader", log), re.search(rf"runtime jobs read: {count} valid, 0 refused", log)
    assert became is not None and read is not None and read.start() < became.start()


def test_a_launching_beat_leaves_the_lease_to_a_standby_that_read_them_all(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """A beat still in its first read of the runtime jobs does not take a free lease: a standby that has read
    them all takes it and leads at once (holding it, the launching beat would lead no job until its read ends)."""
    config = _config(tmp_path / "beatd.yaml", shared_redis, namespace)
    count = 3 * defaults.RUNTIME_CHANGES_PER_POLL
    jobs = RuntimeJobs(config, JobStore(connect(config.settings.redis), Keys(namespace)), actor="tester")
    jobs.put_many({f"c{index}": {"every": "1h", "call": "tests.worker_jobs:noop"} for index in range(count)})
    clock = SystemClock()

    def replica(name: str) -> Beat:
        store = Store(connect(config.settings.redis), Keys(namespace))
        follower = RuntimeFollower(JobStore(store.client, store.keys), config, clock, f"beat {name}", store.audit)
        return Beat(config, store, Identity(name, "t", 0, clock.now()), clock=clock, runtime=follower)

    standby, launching = replica("standby"), replica("launching")
    assert standby.runtime is not None and launching.runtime is not None
    while not standby.runtime_read:  # a page a tick, not contending
        assert not standby.leadership.is_leader(clock.monotonic())
        standby.tick(clock.now(), clock.monotonic())
    assert not standby.leadership.is_leader(clock.monotonic())
    launching.tick(clock.now(), clock.monotonic())  # its first page of three
    assert launching.runtime.reading and not launching.leadership.is_leader(clock.monotonic())
    standby.tick(clock.now(), clock.monotonic())
    assert standby.leadership.is_leader(clock.monotonic()) and standby.synced and len(standby.jobs) == count + 1
    while launching.runtime.reading:
        launching.tick(clock.now(), clock.monotonic())
        standby.tick(clock.now(), clock.monotonic())  # the leader renews meanwhile (a slow read outlasts a lease)
    launching.tick(clock.now(), clock.monotonic())
    assert not launching.leadership.is_leader(clock.monotonic())  # it contends now, against a live leader
