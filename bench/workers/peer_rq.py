"""RQ side of the worker benchmarks: the no-op job and a bulk enqueuer. Runs in ``bench/workers/.venv``.

    bench/workers/.venv/bin/python bench/workers/peer_rq.py --url redis://127.0.0.1:PORT/0 --jobs 20000

The worker imports ``peer_rq.noop`` (``bench/workers`` on PYTHONPATH); jobs use RQ's defaults (results and
the finished registry kept ``result_ttl`` = 500 s), so the finished registry counts completed jobs.
"""

from __future__ import annotations

import argparse


def noop() -> None:
    """Do nothing."""


def main() -> None:
    """Enqueue ``--jobs`` no-op jobs into queue ``default``, 1,000 per pipeline."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="Redis URL of the broker")
    parser.add_argument("--jobs", type=int, required=True, help="how many no-op jobs to enqueue")
    options = parser.parse_args()
    from redis import Redis
    from rq import Queue

    queue = Queue("default", connection=Redis.from_url(options.url))
    left = options.jobs
    while left > 0:
        batch = min(1000, left)
        with queue.connection.pipeline() as pipe:
            queue.enqueue_many([Queue.prepare_data("peer_rq.noop") for _ in range(batch)], pipeline=pipe)
            pipe.execute()
        left -= batch
    print(len(queue))


if __name__ == "__main__":
    main()
