"""The jobs page's search, filters and paging (``beatd.web.catalogue``), over an in-memory catalogue: the
indexes it keeps (tags, queues, disabled, search text) select exactly what a walk over every job would."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from beatd.client import Client
from beatd.config import JobSpec, load_config
from beatd.web.catalogue import STATUS_FILTERS, Catalogue


@pytest.fixture
def catalogue(tmp_path: Path) -> Catalogue:
    """Forty jobs over two queues, three tags, some disabled, some described (no Redis is asked: no runtime jobs)."""
    lines = ["redis: {url: 'redis://127.0.0.1:1/0'}", "jobs:"]
    for number in range(40):
        tags = [tag for tag, every in (("even", 2), ("third", 3), ("big", 7)) if number % every == 0]
        queue = "slow" if number % 5 == 0 else "default"
        enabled = "false" if number % 4 == 1 else "true"
        description = "Nightly Report" if number % 6 == 0 else ""
        lines.append(f"  job-{number:02d}: {{command: [x], every: 1h, queue: {queue}, tags: {tags}, "
                     f"enabled: {enabled}, description: '{description}'}}")  # fmt: skip
    path = tmp_path / "beatd.yaml"
    path.write_text("\n".join(lines) + "\n")
    return Catalogue(Client(config=load_config(path, {})))


def _walk(specs: list[JobSpec], query: str, tag: str, queue: str, status: str, failing: set[str],
          paused: set[str]) -> list[str]:  # fmt: skip
    """What the filters mean, judged job by job."""

    def status_of(spec: JobSpec) -> str:
        if spec.name in failing:
            return "failing"
        if spec.name in paused:
            return "paused"
        return "ok" if spec.enabled else "disabled"

    needle = query.lower()
    return [
        spec.name for spec in specs
        if (not needle or needle in spec.name.lower() or needle in spec.description.lower())
        and (not tag or tag in spec.tags) and (not queue or spec.queue == queue)
        and (not status or status_of(spec) == status)
    ]  # fmt: skip


def test_every_combination_of_filters_selects_what_a_walk_over_every_job_selects(catalogue: Catalogue) -> None:
    """Search (any case, name or description), tag, queue and status, alone and combined, with a job both
    failing and paused counted failing: the same jobs in the same order as judging each job."""
    failing = {"job-03", "job-10", "job-12"}
    paused = {"job-10", "job-14", "job-21", "nope"}
    specs = list(catalogue.specs)
    for query, tag, queue, status in itertools.product(
        ["", "JOB-1", "nightly", "zzz"], ["", "even", "big", "none"], ["", "slow", "default"], ["", *STATUS_FILTERS]
    ):
        judged = {"failing": dict.fromkeys(failing, "f"), "paused": dict.fromkeys(paused)}
        selection = catalogue.select(query=query, tag=tag, queue=queue, status=status, limit=500, **judged)
        wanted = _walk(specs, query, tag, queue, status, failing, paused)
        assert [spec.name for spec in selection.specs] == wanted, (query, tag, queue, status)
        assert selection.total == len(wanted)


def test_pages_cover_the_selection_once_and_an_offset_past_the_end_shows_the_last_job(catalogue: Catalogue) -> None:
    """Pages of 7 from offset 0 on list every matching job once, in order; an offset past the end is pulled
    back to the last job, a negative one to the first."""
    everything = [spec.name for spec in catalogue.select(failing={}, paused={}, limit=500).specs]
    assert len(everything) == 40
    paged = [spec.name for offset in range(0, 40, 7)
             for spec in catalogue.select(failing={}, paused={}, offset=offset, limit=7).specs]  # fmt: skip
    assert paged == everything
    last = catalogue.select(tag="even", failing={}, paused={}, offset=10**9, limit=7)
    assert last.total == 20 and [spec.name for spec in last.specs] == ["job-38"] and last.offset == 19
    assert catalogue.select(failing={}, paused={}, offset=-5, limit=2).offset == 0
    assert list(catalogue.queues) == ["default", "slow"]
