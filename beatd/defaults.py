"""Every default of beatd in one place, each with the reason for its value.

The config model, the JSON Schema, ``beatd schema`` and the README's config reference all read these.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

REDIS_URL: Final = "redis://127.0.0.1:6379/0"
"""Redis to use when the config names none; production configs take it from ``${BEATD_REDIS_URL}``."""

NAMESPACE: Final = "beatd"
"""Prefix of every Redis key, so that several deployments can share one Redis."""

SHARDS_MAX: Final = 1024
"""The most shards a deployment may have (each is a lease, a progress hash and a set of queue streams)."""

TIMEZONE: Final = "UTC"
"""Time zone of every job that names none; UTC so that a config means the same on every host."""

CONFIG_SEARCH_PATH: Final = ("config/beatd.yaml", "/etc/beatd/beatd.yaml")
"""Where the CLI looks for the config after ``-c`` and ``$BEATD_CONFIG``, in this order."""

LEASE: Final = timedelta(seconds=5)
"""Leader lease TTL. The leader renews every third of it; a standby takes over at most about this long after
the leader dies (at once after a clean shutdown, which releases the lease)."""

LOG_FORMAT: Final = "%(levelname)s %(name)s: %(message)s"
"""A daemon's log line in the text format (journald adds the time), and a log record in a run's output."""

HEARTBEAT_INTERVAL: Final = timedelta(seconds=1)
"""How often each replica publishes its heartbeat (role, config digest, config errors)."""

REPLICA_STALE_AFTER: Final = timedelta(seconds=10)
"""A replica whose heartbeat is older than this is shown as gone by ``beatd status`` (and taken for stopped by
``beatd reshard``)."""

LAYOUT_RECHECK: Final = timedelta(seconds=5)
"""How often a running beat reads the deployment's layout (``{ns:0}:layout``) again: a replica that was stalled or
cut off past ``REPLICA_STALE_AFTER`` (a reshard may have run meanwhile) checks it before it leads anything again,
and exits 2 when the shard count changed."""

CELERY_QUEUE: Final = "celery"
"""Celery queue of ``celery`` jobs that name none: Celery's own ``task_default_queue``, so an unchanged worker
(``celery -A proj worker``, which consumes ``celery``) runs them."""

CELERY_OUTBOX_LIMIT: Final = 10_000
"""Most task messages the Celery outbox holds (a broker on another server): past it the fenced script refuses
a celery fire (logged, retried, its progress unmoved; the job's catch-up policy judges the gap), so a broker
down for long never grows beatd's Redis without bound nor drops a fire unrecorded. 10,000 envelopes of ~1 KB
are ~10 MB, hours of backlog for most deployments."""

RELAY_BATCH: Final = 100
"""Most outbox entries the relay publishes to a Redis broker (one MULTI) before it deletes them in one fenced
call: a duplicate publish (the leader killed between the broker's reply and the delete) repeats at most this
many."""

RELAY_BATCH_AMQP: Final = 100
"""The same for an AMQP broker: the batch is published without waiting and its publisher confirms awaited
together (one round trip), so a duplicate publish after a kill repeats at most this many, and usually none:
the fenced delete follows the confirms at once (measured in docs/benchmarks.md)."""

RELAY_IDLE: Final = timedelta(milliseconds=100)
"""How long the relay waits when the outbox is empty (or while this replica is not the leader)."""

RELAY_BACKOFF_MAX: Final = timedelta(seconds=5)
"""Longest wait between the relay's attempts while the broker refuses or is unreachable (doubling from 0.1 s)."""

RELAY_POISON_AFTER: Final = 5
"""Times the broker may refuse one outbox entry by itself (the others of its batch accepted) before the relay
moves it to the dead stream (``{ns}:celery-outbox-dead``, with the reason, logged): a poisoned entry must not
block or be re-published with the ones behind it. An outage (nothing accepted) never counts."""

CELERY_OUTBOX_DEAD_LIMIT: Final = 1_000
"""Most entries the dead stream keeps (approximately; the oldest go): an operator inspects a few, a broken
broker config must not grow beatd's Redis without bound."""

CELERY_OUTBOX_WARN_AFTER: Final = timedelta(minutes=1)
"""``beatd status`` warns when the Celery outbox's oldest task message has waited longer than this: the relay
publishes within a second while the broker answers, so a minute means the broker is down or refusing."""

RELAY_STOP_WAIT: Final = timedelta(milliseconds=500)
"""Longest the main loop waits for the relay thread to end when it stops it (a reload, a shutdown): the thread
ends after its current publish, bounded by the broker timeouts below; a successor relay waits for it in its own
thread, and what it confirmed but could not delete under the lease is published again (at least once)."""

RELAY_SHUTDOWN_WAIT: Final = timedelta(seconds=5)
"""Longest a stopping beat waits for its relay thread before releasing the lease (it is no longer ticking):
enough for a publish bounded by ``BROKER_TIMEOUT``, so what the broker confirmed is deleted, not republished."""

BROKER_TIMEOUT: Final = timedelta(seconds=2)
"""Connect, read, write and publisher-confirm timeout of the relay's broker connection: a stalled broker fails
the publish (retried with backoff, nothing deleted) instead of blocking the relay thread forever."""

AMQP_HEARTBEAT: Final = 30
"""AMQP heartbeat (seconds) the relay negotiates, so RabbitMQ and the relay both notice a dead peer; a connection
idle for longer than this is reopened before the next publish (py-amqp sends heartbeats only when called)."""

QUEUE: Final = "default"
"""Queue (Redis stream) a job's fires go to."""

TIMEOUT: Final = timedelta(hours=1)
"""Hard limit of one run; a run past it is terminated and recorded ``timeout``. An hour fits nightly batch
jobs yet still frees a worker from a hung one the same day."""

RETRIES: Final = 0
"""Further attempts after a failed run. Zero: a scheduled job is retried only when its author says it is
safe to run twice (the next fire usually comes soon anyway)."""

RETRY_DELAY: Final = timedelta(seconds=10)
"""Base of the exponential backoff between attempts (full jitter)."""

RETRY_DELAY_MAX: Final = timedelta(minutes=10)
"""Cap of the backoff between attempts."""

CATCHUP: Final = "latest"
"""After a gap with no leader, emit only the most recent missed fire (as Kubernetes CronJobs and Celery beat
do), provided it is within ``misfire_grace``; the others are recorded as missed."""

MISFIRE_GRACE: Final = timedelta(hours=1)
"""How late a missed fire may still be emitted by ``catchup: latest`` or ``all``."""

CATCHUP_LIMIT: Final = 100
"""Most missed fires ``catchup: all`` emits for one job after one gap; older ones are recorded as missed."""

OVERLAP: Final = "skip"
"""A fire whose job is still running is recorded ``skipped``, as a systemd timer does not start a unit
that is still active."""

ENABLED: Final = True
"""Jobs are scheduled unless they say ``enabled: false``."""

JITTER: Final = timedelta(0)
"""No emission delay unless asked for."""

HISTORY_KEEP: Final = 100
"""Run records kept per job (newest first); older ones are pruned. A kept record costs about 0.66 KB of Redis
(docs/benchmarks.md, "History memory"), so the history of 100,000 jobs fits about 8 GiB however often they
fire: 4 days of an hourly job, the 30 days of ``HISTORY_MAX_AGE`` of a daily one (it was 1,000, 72 GiB for
that fleet; ``defaults: {history: {keep: 1000}}`` keeps that)."""

HISTORY_MAX_AGE: Final = timedelta(days=30)
"""Run records older than this are pruned, whatever ``history.keep`` says."""

WORKER_CONCURRENCY: Final = 4
"""Runs one worker process executes at once."""

WORKER_PREFETCH: Final = 2
"""Fires a worker claims per runner, running or waiting for a runner (Celery's prefetch multiplier): enough
to keep runners busy and to claim in batches, few enough that a worker holds little back from the others.
Short jobs run faster with more (bigger batches); a worker of long jobs should claim 1 per runner."""

WORKER_GRACE: Final = timedelta(seconds=30)
"""On SIGTERM, how long running jobs may finish before they are stopped and left to be reclaimed."""

WORKER_ISOLATION: Final = "process"
"""Callables run in a child process, so a hung or crashing job cannot take the worker down and timeouts are
hard. ``thread`` runs them in the worker itself: faster, but a timeout can only be recorded, not enforced."""

TARGET_CHECK_TIMEOUT: Final = timedelta(seconds=60)
"""How long a worker's check of its ``call`` targets (at start and on each reload) may take in all: an import
still running then (module code that waits on something) is reported as failed, the targets not reached as
not checked. Long enough for slow imports of big libraries; a reload blocks the worker's loop this long at
most (it feeds the systemd watchdog meanwhile)."""

KILL_GRACE: Final = timedelta(seconds=5)
"""After a timeout or cancellation, how long a job has between SIGTERM and SIGKILL (``worker.kill_grace``)."""

RUN_LEASE_MAX: Final = timedelta(seconds=30)
"""A run's lease (visibility timeout) is its job's timeout plus the kill grace, at most this; the worker renews
it while the run lives, so a run of a dead worker is reclaimed within one lease."""

OUTPUT_TAIL: Final = 16 * 1024
"""Bytes of a run's output (stdout, stderr and log records) kept at its end in the run record
(``worker.output_tail``, per job ``output.tail``): a traceback and the last couple of hundred lines, while a
job's 1,000 records stay within about 16 MB of Redis memory even when every run is chatty. A callable's output
is in the order written; a command's as the worker reads its two files, every 50 ms (``executor.POLL``): what
it wrote to stdout since the last look, then what it wrote to stderr."""

OUTPUT_TAIL_MAX: Final = 1024 * 1024
"""Largest ``output.tail`` accepted: run records are read whole by ``history`` and held in Redis memory."""

OUTPUT_CHUNK_CHARS: Final = 4096
"""Most characters in one entry of a run's live output stream (longer writes are split)."""

OUTPUT_STREAM_MAXLEN: Final = 1000
"""Entries kept (approximately) in a run's live output stream, so with ``OUTPUT_CHUNK_CHARS`` one run's stream
holds at most about 4 MB however much the job writes; the run record keeps the final tail anyway."""

OUTPUT_STREAM_TTL: Final = timedelta(hours=1)
"""A run's live output stream expires this long after its last write (``beatd logs --follow`` of a job silent
for longer starts from its next write)."""

OUTPUT_STREAM_TTL_ENDED: Final = timedelta(minutes=5)
"""After its run ends, a live output stream lives this long, for a ``logs --follow`` that is catching up; then
the run record's tail is what remains."""

OUTPUT_FLUSH_INTERVAL: Final = timedelta(milliseconds=200)
"""How often a worker sends its runs' new output to Redis: one round trip for every run, however often jobs
print, and lines appear in ``beatd logs --follow`` within about this long."""

OUTPUT_BATCH_CHARS: Final = 4096
"""A process-isolation child hands its run's output to the worker once this many characters wait (or
``OUTPUT_BATCH_INTERVAL`` after the first, or at the run's end): one pipe message per ``print`` would cost
more than the print."""

OUTPUT_BATCH_INTERVAL: Final = timedelta(milliseconds=50)
"""Longest a child holds a run's output before handing it to the worker: well under the live stream's
``OUTPUT_FLUSH_INTERVAL``, so ``logs --follow`` hardly waits longer."""

OUTPUT_PENDING_CHARS: Final = 256 * 1024
"""Most characters of one run's output waiting to be sent to Redis (while Redis is slow or away); beyond it the
oldest are dropped from the live stream (the run record's tail is unaffected) and a line says how many."""

WORKER_STALE_AFTER: Final = timedelta(seconds=10)
"""A worker whose heartbeat is older than this is shown as gone by ``beatd workers`` (and ``beatd logs
--follow`` of a run of it stops waiting)."""

EXPIRES: Final = None
"""No start deadline: a fire waits for a worker however long that takes, so none is lost. A job whose late run is
useless (a report for a slot long past) sets ``expires``: a fire not started within it of its scheduled instant
(of its request, for manual and backfill fires) is recorded ``expired`` and not run."""

UPKEEP_INTERVAL: Final = timedelta(seconds=5)
"""How often the leader does its upkeep (prunes heartbeats, expires waiting fires, measures backlogs): often
enough that a gauge is fresh and an expired fire is recorded within seconds, rare enough to cost nothing."""

HEARTBEAT_FORGET_AFTER: Final = timedelta(minutes=1)
"""A replica or worker heartbeat that has not changed for this long is deleted by the leader's upkeep (six
times the time after which it is shown as gone, so a paused process is listed as gone before it vanishes);
a process that comes back publishes it again within a second."""

BACKLOG_WARN_AFTER: Final = timedelta(minutes=5)
"""``beatd status`` warns about a queue whose oldest waiting fire has waited longer than this: a consumer keeps
up within seconds, so minutes mean too few workers, or none."""

BACKFILL_LOCK_TTL: Final = timedelta(seconds=60)
"""How long a backfill's lock on its job lasts (it reads what is done, then emits at most 10,000 fires, in
seconds): a second backfill of the job meanwhile is refused, and a backfill that crashed frees the job after it."""

WAIT_CLOCK_MARGIN: Final = timedelta(seconds=60)
"""How far before a command's emit time ``--wait`` looks for its fires' records and dead letters: the worker
that writes them may have a clock that is behind this host's."""

DEAD_MAXLEN: Final = 100_000
"""Dead letters kept (approximately)."""

CONFIG_MAX_BYTES: Final = 64 * 1024 * 1024
"""Largest config file (main file or drop-in) beatd reads, in bytes. A 100,000-job config is about 12 MB in
flow style and about 25 MB in block style with comments; 64 MiB leaves room above that while refusing a log
file or a device passed by mistake before it is read into memory."""

CONFIG_ALIAS_BYTES: Final = 2**20
"""What aliases (``*name``, ``<<: *name``) may add to any config file however small, counted as the characters
the aliased values would take written out: far more than sharing anchors between jobs needs, while a
few-hundred-byte "billion laughs" alias bomb (gigabytes written out) is refused in milliseconds."""

CONFIG_ALIAS_AMPLIFICATION: Final = 10
"""Beyond ``CONFIG_ALIAS_BYTES``, aliases may add at most this many times the file's own size (an anchor merged
into every job of a 100,000-job config adds less than once its size), and never past ``CONFIG_MAX_BYTES`` in
all: aliases cannot make a config cost more than the largest file beatd reads."""

CONFIG_MAX_DEPTH: Final = 100
"""Deepest nesting of mappings and lists in a config file. A config needs a handful of levels (``jobs``, a job,
its ``kwargs`` and their JSON values); 100 leaves room for any argument while staying far below the depth at
which reading the file would exhaust Python's stack."""

ENDED_MAXLEN: Final = 1_000
"""Most ends of one job's fires kept in its ``ended`` stream (approximate): a waiter reads each end within
milliseconds of its XADD, so the stream only has to cover the ends written while a waiter is between two
reads; a backfill's waiter reads up to this many at once. Ends older than ``ENDED_TTL`` go too (a job ending a
fire every 10 s keeps about 60, up to one stream node more: 6-17 KB, not the 107 KB of 1,000)."""

ENDED_TTL: Final = timedelta(minutes=10)
"""How long a job's ``ended`` stream lives after its last end: a waiter reads ends as they come, so an idle
job's stream (a job removed, a job that fires monthly) goes away instead of staying forever."""

WAIT_RECHECK_EVERY: Final = timedelta(seconds=5)
"""How long a wait blocks on the ``ended`` stream and the dead letters before it also reads the awaited fires'
records and where fires wait: the safety net for an end whose notification was trimmed before it was read
(or a fire whose records were pruned); the ends themselves arrive by the notification at once."""

OVERRIDES_MAX_BYTES: Final = 64 * 1024
"""Largest JSON of a trigger's argument overrides (``{"args": ..., "kwargs": ...}``), in bytes. They travel in
the fire's message, which sits in a queue stream, the retry set and dead letters and is read by every worker of
the queue: arguments should name data (ids, dates, options), not carry it; 64 KiB leaves room for long lists
of ids while refusing a document passed by mistake."""

RUNTIME_CHANGES_MAXLEN: Final = 200_000
"""Entries kept in the runtime job change stream: a put_many of 100,000 jobs stays readable as changes by a reader
that was a batch behind; one further behind (a replica down for long) reads the whole hash once instead."""

RUNTIME_BATCH: Final = 1000
"""Most runtime jobs written by one script call of ``put_many`` (one audit record each): about 10 ms of Redis."""

RUNTIME_POLL: Final = timedelta(milliseconds=250)
"""How often a beat or worker reads the runtime jobs' version key (one GET): a change is applied within this,
plus the loop's own sleep (at most a second)."""

RUNTIME_SPEC_MAX_BYTES: Final = 64 * 1024
"""Largest runtime job spec accepted (its JSON): a spec is a job, not a data store."""

RUNTIME_FORGET_BATCH: Final = 1000
"""Most deleted runtime jobs whose per-job fields one leader upkeep step forgets (one fenced script call, about
7,000 HDELs: a few ms of Redis)."""

RUNTIME_CHANGES_PER_POLL: Final = 5000
"""Most runtime job changes a beat or worker applies in one loop step (about a quarter of a second of
validation): a put_many of 100,000 is taken in steps, with the lease renewed between them."""

ALERT_WINDOW: Final = timedelta(minutes=10)
"""Grouping window of alerts: the first event of a job and rule in a window is told at once, the rest of the
window's are counted and told in one summary when it closes, so a storm is a few messages that say how many."""

ALERT_SINK_TIMEOUT: Final = 10.0
"""Seconds one delivery attempt to a sink may take (connect and reply): a hung sink delays the others little."""

ALERT_RETRY_FIRST: Final = timedelta(seconds=1)
"""Wait before the second attempt of a delivery; it doubles after each failure (with jitter) up to the next."""

ALERT_RETRY_MAX: Final = timedelta(minutes=5)
"""Longest wait between delivery attempts of one alert to one sink."""

ALERT_ATTEMPTS: Final = 300
"""Attempts of one delivery before it is given up (recorded, audited): at the longest wait about a day."""

ALERT_EVENTS_LIMIT: Final = 100_000
"""Most alert events waiting for the leader (``{ns}:alerts:events``): a run end past it writes none (counted),
so a deployment without a leader for long cannot grow Redis without bound. The Lua prelude has the same number."""

ALERT_LOG_MAXLEN: Final = 10_000
"""Entries of the alerts log (``beatd alerts``: raised, attempts, delivered, given up) kept, approximately."""

ALERT_DELIVERIES_LIMIT: Final = 10_000
"""Most deliveries waiting (``{ns}:alerts:deliveries``): past it new groups are counted as dropped, not queued."""

ALERT_BATCH: Final = 500
"""Most alert events the leader groups, and deliveries it attempts, in one step."""

ALERT_WATCH_INTERVAL: Final = timedelta(seconds=1)
"""How often the leader judges deadlines, silence and unserved queues, and a standby the missing leader."""
TALLY_BUCKET: Final = timedelta(minutes=5)
"""The span of one run-count bucket (``{ns}:tally:{bucket_ms}``): the dashboard sums the buckets of the last
hour and day."""

TALLY_TTL: Final = timedelta(hours=25)
"""How long a run-count bucket is kept after its last write (a day, plus the bucket being summed)."""
