"""beatd web benchmark: the jobs page and the overview with 100,000 jobs and a million run records.

Command (from the repo root)::

    .venv/bin/python bench/web.py --jobs 100000 --records 10

In a fresh private redis-server (free loopback port, no persistence; never the system Redis): a config of N
YAML jobs (``every: 1h``, queue ``default``, a tag on every 10th) is loaded once (load time printed, not part of
a request), and N x R run records are written straight into each job's history hash and index (pipelined), with
the run-count buckets of the last day and a failing job per 1,000. Then the app is served in process (Starlette's
TestClient, the same handlers as uvicorn) and each URL is requested 20 times after 2 warm-ups: median and worst
wall time of the whole request (auth, Redis reads, rendering). Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common as C

from beatd.client import Client
from beatd.config import load_config
from beatd.keys import Keys
from beatd.messages import format_utc, from_ms
from beatd.store import connect
from beatd.store.runs import tally_bucket

TOKEN = "bench-token"
URLS = ["/", "/api/v1/overview", "/jobs", "/api/v1/jobs", "/jobs?q=job-0999", "/jobs?tag=even&offset=5000",
        "/jobs?status=failing", "/jobs?status=ok&offset=50000", "/jobs/job-000042"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=10, help="run records per job")
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args()
    from starlette.testclient import TestClient

    from beatd.web import Catalogue, Tokens, Web, create_app

    with tempfile.TemporaryDirectory(prefix="beatd-bench-web-") as scratch:
        workdir = Path(scratch)
        server = C.RedisServer(workdir)  # started on construction
        try:
            path = workdir / "beatd.yaml"
            lines = [f"redis: {{url: '{server.url}'}}", "namespace: bench", "jobs:"]
            for index in range(options.jobs):
                tags = ", tags: [even]" if index % 10 == 0 else ""
                lines.append(f"  job-{index:06d}: {{call: bench.target:noop, every: 1h{tags}}}")
            path.write_text("\n".join(lines) + "\n")
            started = time.perf_counter()
            config = load_config(path, {})
            load_s = time.perf_counter() - started
            redis_client = connect(config.settings.redis)
            started = time.perf_counter()
            _fill(redis_client, Keys("bench"), list(config.jobs), options.records)
            fill_s = time.perf_counter() - started
            client = Client(config=config, actor="bench")
            tokens = Tokens.from_environ({"BEATD_WEB_READ_TOKEN": TOKEN}, "127.0.0.1")
            app = create_app(Web(client, Catalogue(client)), tokens)
            results = {}
            with TestClient(app, base_url="http://127.0.0.1") as http:
                http.headers["Authorization"] = f"Bearer {TOKEN}"
                for url in URLS:
                    times = []
                    for attempt in range(options.repeat + 2):
                        begin = time.perf_counter()
                        reply = http.get(url)
                        elapsed = (time.perf_counter() - begin) * 1000
                        assert reply.status_code == 200, (url, reply.status_code, reply.text[:300])
                        if attempt >= 2:
                            times.append(elapsed)
                    results[url] = {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}
            client.close()
        finally:
            server.stop()
    print(f"jobs {options.jobs:,}, run records {options.jobs * options.records:,}; config load {load_s:.1f}s, "
          f"history written in {fill_s:.1f}s")  # fmt: skip
    print(f"{'URL':<32} {'median ms':>10} {'max ms':>10}")
    for url, figures in results.items():
        print(f"{url:<32} {figures['median_ms']:>10} {figures['max_ms']:>10}")
    print(json.dumps({"jobs": options.jobs, "records": options.jobs * options.records, "load_s": round(load_s, 1),
                      "machine": C.machine(), "results": results}))  # fmt: skip
    sys.stdout.flush()


def _fill(redis_client: object, keys: Keys, jobs: list[str], per_job: int) -> None:
    """``per_job`` succeeded run records per job (the last failed for every 1,000th), run-count buckets, failing."""
    now_ms = int(time.time() * 1000)
    pipe = redis_client.pipeline(transaction=False)  # type: ignore[attr-defined]
    for number, job in enumerate(jobs):
        records, index = {}, {}
        for slot in range(per_job):
            scheduled = now_ms - (per_job - slot) * 3_600_000
            status = "failed" if number % 1000 == 0 and slot == per_job - 1 else "succeeded"
            fire = f"{job}@{format_utc(from_ms(scheduled))}"
            run, at = f"{fire}#1", format_utc(from_ms(scheduled))
            records[run] = json.dumps({
                "version": 1, "run_id": run, "fire_id": fire, "job": job, "scheduled_at": at,
                "trigger": "schedule", "attempt": 1, "status": status, "started_at": at,
                "finished_at": format_utc(from_ms(scheduled + 120)), "duration_s": 0.12, "worker": "bench",
                "result": None,
            })  # fmt: skip
            index[run] = scheduled
        pipe.hset(keys.runs(job), mapping=records)
        pipe.zadd(keys.runs_by_time(job), index)
        if number % 1000 == 0:
            pipe.hset(keys.failing, job, f"{job}@x")
        if number % 500 == 499:
            pipe.execute()
    for bucket in range(288):
        pipe.hset(
            keys.tally(tally_bucket(now_ms) - bucket * 300_000),
            mapping={"succeeded": 350, "failed": 1, "missed": 2, "expired": 1},
        )
    pipe.execute()


if __name__ == "__main__":
    main()
