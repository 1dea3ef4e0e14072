"""``beatd.AsyncClient``: the client for asyncio code. Triggering and waiting use redis.asyncio (a wait blocks
on the fire's end notification without holding a thread); the other calls run the synchronous client's in a
thread (``asyncio.to_thread``), so they never block the event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from beatd import defaults
from beatd.audit import audit_record
from beatd.client.emitting import fire_message, signed
from beatd.client.handles import as_record, outcome, timed_out
from beatd.client.sync import Client, instant_of
from beatd.client.waiting import BLOCK_LIMIT, READ_COUNT, FireEnds
from beatd.config import Config, JobSpec
from beatd.errors import UsageProblem
from beatd.messages import from_ms, to_ms
from beatd.overrides import effective_arguments
from beatd.records import RunRecord
from beatd.store.aio import AsyncRunStore
from beatd.store.base import connect_async

__all__ = ["READ_TIMEOUT", "AsyncClient", "AsyncFireHandle"]

READ_TIMEOUT = 10.0
"""How long (s) a reply may take on the async client's connections: well past a wait's blocking XREAD
(``BLOCK_LIMIT``), since an event loop running many waits may read a reply late; connecting stays bounded by 2 s."""


class AsyncClient:
    """:class:`Client` for asyncio: the same constructor arguments, the same methods as coroutines (a write
    checks the deployment's layout first, as the synchronous client's do). Close it with ``await
    client.aclose()`` (or ``async with``)."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        namespace: str = defaults.NAMESPACE,
        config: Config | None = None,
        actor: str | None = None,
        shards: int = 1,
    ) -> None:
        self.sync = Client(redis_url, namespace=namespace, config=config, actor=actor, shards=shards)
        """The synchronous client the thread-run calls use (and its config, jobs and keys)."""
        self.config = self.sync.config
        connection = connect_async(self.config.settings.redis, read_timeout=READ_TIMEOUT)
        self.store = AsyncRunStore(connection, self.sync.keys, self.config.shard_keys())

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None, actor: str | None = None
    ) -> AsyncClient:
        """As :meth:`Client.from_config` (reading the file is synchronous: do it at start-up)."""
        return cls(config=Client.from_config(path, environ=environ, actor=actor).config, actor=actor)

    async def aclose(self) -> None:
        """Close both connection pools."""
        await self.store.close()
        self.sync.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def job(self, name: str) -> JobSpec:
        """The declared job ``name`` (no I/O); UnknownJob when there is none."""
        return self.sync.job(name)

    async def trigger(
        self,
        job: str,
        *,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        at: datetime | str | None = None,
    ) -> AsyncFireHandle:
        """As :meth:`Client.trigger`; the overrides are refused (OverridesRefused) before anything is sent."""
        spec = self.sync.job(job)
        arguments = effective_arguments(spec, args, kwargs)
        if spec.celery is not None:
            handle = await asyncio.to_thread(self.sync.trigger, job, args=args, kwargs=kwargs, at=at)
            return AsyncFireHandle(self, handle.fire_id, job, handle.queue, handle.scheduled_at, handle.since_ms,
                                   handle.celery_task_id)  # fmt: skip
        if self.sync.layout.due:  # one GET on the synchronous client's connection, off the event loop
            await asyncio.to_thread(self.sync.layout.check)
        now = from_ms(await self.store.redis_now_ms())
        scheduled = instant_of(at, spec, "at") if at is not None else now
        message = fire_message(spec, scheduled, now, "manual", arguments)
        details: dict[str, Any] = {"job": job, "fire_id": message.fire_id, "scheduled_at": message.scheduled_at}
        if args is not None:
            details["args"] = message.args
        if kwargs is not None:
            details["kwargs"] = dict(kwargs)
        if self.sync.actor is not None:
            details["actor"] = self.sync.actor
        ((text, signature),) = signed(self.config, [message])
        await self.store.enqueue(job, spec.queue, text, signature, audit_record("trigger", now, **details))
        since = to_ms(now - defaults.WAIT_CLOCK_MARGIN)
        return AsyncFireHandle(self, message.fire_id, job, spec.queue, message.scheduled_at, since)

    async def pause(self, job: str, reason: str = "") -> bool:
        """As :meth:`Client.pause`."""
        return await asyncio.to_thread(self.sync.pause, job, reason)

    async def resume(self, job: str) -> bool:
        """As :meth:`Client.resume`."""
        return await asyncio.to_thread(self.sync.resume, job)

    async def jobs(self) -> list[JobSpec]:
        """As :meth:`Client.jobs`."""
        return self.sync.jobs()

    async def next(self, job: str, n: int = 5, after: datetime | str | None = None) -> list[datetime]:
        """As :meth:`Client.next`."""
        return await asyncio.to_thread(self.sync.next, job, n, after)

    async def history(
        self, job: str | None = None, *, status: str | None = None, since: datetime | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """As :meth:`Client.history`."""
        return await asyncio.to_thread(self.sync.history, job, status=status, since=since, limit=limit)

    async def show(self, identifier: str) -> list[RunRecord]:
        """As :meth:`Client.show`."""
        return await asyncio.to_thread(self.sync.show, identifier)

    async def status(self) -> dict[str, Any]:
        """As :meth:`Client.status`."""
        return await asyncio.to_thread(self.sync.status)

    async def sources(self, jobs: Sequence[str]) -> dict[str, str]:
        """As :meth:`Client.sources`."""
        return await asyncio.to_thread(self.sync.sources, jobs)

    async def workers(self) -> list[dict[str, Any]]:
        """As :meth:`Client.workers`."""
        return await asyncio.to_thread(self.sync.workers)

    async def export_records(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[dict[str, Any]]:
        """As :meth:`Client.export_records`."""
        return await asyncio.to_thread(self.sync.export_records, since, until)


@dataclasses.dataclass
class AsyncFireHandle:
    """:class:`FireHandle` for asyncio: ``await handle.wait(timeout)``, ``await handle.result(timeout)``."""

    client: AsyncClient = dataclasses.field(repr=False)
    fire_id: str
    job: str
    queue: str
    scheduled_at: str
    since_ms: int = dataclasses.field(repr=False)
    celery_task_id: str | None = None

    async def wait(self, timeout: float | None = None) -> RunRecord:
        """As :meth:`FireHandle.wait`: blocks (without a thread) on the end notification."""
        if self.celery_task_id is not None:
            raise UsageProblem(f"{self.job} is a celery job, run by Celery's workers: wait on Celery's "
                               f"AsyncResult({self.celery_task_id!r})")  # fmt: skip
        store, loop = self.client.store, asyncio.get_running_loop()
        ends = FireEnds(store.keys_of(self.job), self.job, self.queue, [self.fire_id], self.since_ms)
        deadline = None if timeout is None else loop.time() + timeout
        recheck = defaults.WAIT_RECHECK_EVERY.total_seconds()
        await self._recheck(ends)
        last_check = loop.time()
        while ends.pending:
            now = loop.time()
            if deadline is not None and now >= deadline:
                raise timed_out(self.fire_id, timeout)
            left = BLOCK_LIMIT if deadline is None else max(min(BLOCK_LIMIT, deadline - now), 0.001)
            if not await self._read(ends, left) and loop.time() - last_check >= recheck:
                await self._recheck(ends)
                last_check = loop.time()
        return as_record(ends.ended[self.fire_id])

    async def result(self, timeout: float | None = None) -> Any:
        """As :meth:`FireHandle.result`."""
        final = await self.wait(timeout)
        found = await self.client.store.records_of_fires(self.job, [self.fire_id], self.since_ms)
        attempts = sorted((RunRecord.from_json(text) for text in found.get(self.fire_id, [])),
                          key=lambda record: (record.attempt, record.status == "dead"))  # fmt: skip
        return outcome(final, attempts)

    async def _read(self, ends: FireEnds, seconds: float | None) -> int:
        """As :meth:`FireWatch.block`."""
        store = self.client.store
        reply = await store.read_streams(ends.after, READ_COUNT, None if seconds is None else int(seconds * 1000))
        for fire, run, status in ends.take(reply):
            ends.found(fire, run, status, await store.run_record(self.job, run) if run else None)
        return max((len(entries) for _, entries in reply), default=0)

    async def _recheck(self, ends: FireEnds) -> None:
        """As :meth:`FireWatch.recheck`."""
        if not ends.pending:
            return
        store = self.client.store
        waiting = await store.waiting_messages(self.queue, self.job)
        ends.settle(await store.records_of_fires(self.job, ends.pending, self.since_ms))
        while await self._read(ends, None) >= READ_COUNT:
            pass
        ends.gone(waiting)
