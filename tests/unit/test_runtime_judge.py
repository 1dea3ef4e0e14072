"""The per-shape judge gives the full validation's verdict, spec and message for every entry, and validates a
shape of job once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from beatd.config import Config, load_config
from beatd.config.job_documents import job_from_mapping
from beatd.errors import ConfigError
from beatd.keys import Keys
from beatd.runtime_jobs import RuntimeJobs, check_job, judge
from beatd.runtime_judge import Judge
from beatd.store.jobs import JobStore
from tests.conftest import WriteFiles

CONFIG = """
    redis: {url: "redis://127.0.0.1:1/0"}
    timezone: Europe/Paris
    defaults: {retries: 2}
    runtime_jobs: {allow: ["app.tasks:*"]}
    alerts:
      sinks:
        mail: {type: email, host: smtp.example.com, from: beatd@example.com, to: [ops@example.com]}
      rules:
        - {on: dead, sinks: [mail], tags: [vip]}
    jobs:
      nightly: {cron: "0 3 * * *", call: app.tasks:nightly}
"""

SPECS: list[dict[str, Any]] = [
    {"every": "1h", "call": "app.tasks:send"},
    {"every": "1h", "call": "app.tasks:send", "start": "2026-01-01T00:05:00"},
    {"every": "1h", "call": "app.tasks:send", "start": "2026-01-01T00:07:00Z", "end": "2027-01-01"},
    {"every": "1h", "call": "app.tasks:send", "start": "2026-01-01T00:05:00.0001Z"},  # not whole ms
    {"every": "1h", "call": "app.tasks:send", "start": "2026-06-01", "end": "2026-05-01"},  # end before start
    {"every": "1h", "call": "app.tasks:send", "start": ["a list"]},
    {"every": "1h", "call": "app.tasks:send", "start": "2026-13-01"},
    {"cron": "H * * * *", "call": "app.tasks:send", "start": "2026-01-01", "timezone": "America/New_York"},
    {"cron": "H * * * *", "call": "app.tasks:send", "start": "2026-01-02", "timezone": "America/New_York"},
    {"at": ["2026-03-29T02:30:00"], "call": "app.tasks:send", "end": "2026-12-31T00:00:00Z"},
    {"every": "1h", "call": "app.tasks:send", "tags": ["vip"], "start": "2026-01-01T00:01:00Z"},
    {"every": "1h", "call": "other.tasks:send", "start": "2026-01-01T00:01:00Z"},  # not allowed
    {"every": "1h", "call": "app.tasks:send", "retrys": 1, "start": "2026-01-01T00:01:00Z"},  # unknown key
    {"every": "1h", "call": "app.tasks:send", "retries": 1},
    {"every": "1h", "call": "app.tasks:send", "retries": True},  # equal to 1 in Python: another shape
    {"every": "1h", "call": "app.tasks:send", "enabled": 0},
    {"call": "app.tasks:send", "every": "1h"},  # another key order
    {"every": "1h", "call": "app.tasks:send", "args": [1, "a"], "start": "2026-01-01T00:01:00Z"},  # not plain
    {"every": "1h", "call": "app.tasks:send", "retries": 1.5},  # not plain
]


@pytest.fixture
def config(write_files: WriteFiles) -> Config:
    """A config with a default zone and policy, an allow-list and a tag-selected alert rule."""
    return load_config(write_files({"beatd.yaml": CONFIG}), {})


def _entry(spec: Any) -> str:
    return json.dumps({"version": 1, "spec": spec, "by": "me", "at": "now"})


@pytest.mark.parametrize("name", ["customer-1", "customer-2"])
def test_every_verdict_is_the_full_validations(config: Config, name: str) -> None:
    """Entry by entry, after others of the same shape were judged: the same spec (fields, digests, trigger,
    alert rules) or the same refusal message as the full validation gives."""
    shaped = Judge(config)
    for index, spec in enumerate(SPECS * 2):
        job = f"{name}-{index}"
        fast, fast_why = shaped(job, _entry(spec))
        full, full_why = judge(config, job, _entry(spec))
        assert fast_why == full_why, spec
        assert (fast is None) == (full is None), spec
        if fast is not None and full is not None:
            assert fast.model_dump() == full.model_dump(), spec
            assert (fast.digest, fast.schedule_digest) == (full.digest, full.schedule_digest), spec
            after = datetime(2026, 7, 1, tzinfo=UTC)
            assert fast.trigger().next_after(after) == full.trigger().next_after(after), spec
    assert shaped.fast >= len(SPECS)  # the second round is judged by shape


def test_a_name_the_yaml_declares_and_a_bad_name_take_the_full_path(config: Config) -> None:
    """A runtime entry under a YAML job's name, or under an invalid name, is refused with the full message."""
    shaped = Judge(config)
    spec = _entry({"every": "1h", "call": "app.tasks:send"})
    assert shaped("warm", spec)[0] is not None
    assert shaped("nightly", spec) == judge(config, "nightly", spec)
    assert shaped("bad name!", spec) == judge(config, "bad name!", spec)
    assert shaped("nightly", spec)[0] is None and shaped.fast == 1  # "warm" alone


def test_a_spec_of_a_known_shape_is_not_validated_in_full_again(config: Config) -> None:
    """1,000 jobs of one shape with their own starts cost one full validation; each gets its own start."""
    shaped = Judge(config)
    specs = [shaped(f"c{i}", _entry({"every": "1h", "call": "app.tasks:send",
                                     "start": f"2026-01-01T00:{i % 60:02d}:00Z"})) for i in range(1000)]  # fmt: skip
    assert shaped.fast == 1000 and all(spec is not None for spec, _ in specs)
    assert {spec.start.minute for spec, _ in specs if spec is not None and spec.start} == set(range(60))
    assert {spec.name for spec, _ in specs if spec is not None} == {f"c{i}" for i in range(1000)}


def test_put_many_of_one_shape_still_words_every_problem(config: Config) -> None:
    """put_many validates 500 specs of one shape by the shape, and still reports the bad ones among them with
    the full validation's located messages (nothing written: the store here is unreachable)."""
    store = JobStore(redis.Redis(port=1), Keys("x"))
    specs = {f"c{i}": {"every": "1h", "call": "app.tasks:send", "start": f"2026-01-01T00:{i % 60:02d}:00Z"}
             for i in range(500)}  # fmt: skip
    specs["bad-start"] = {"every": "1h", "call": "app.tasks:send", "start": "2026-13-01"}
    specs["bad-call"] = {"every": "1h", "call": "other.tasks:send"}
    with pytest.raises(ConfigError) as error:
        RuntimeJobs(config, store).put_many(specs)
    expected = []
    for name in ("bad-start", "bad-call"):
        with pytest.raises(ConfigError) as alone:
            check_job(config, name, job_from_mapping(name, specs[name], f"jobs.put_many[{name!r}]"))
        expected.extend(alone.value.problems)
    assert sorted(error.value.problems) == sorted(expected)


def test_jobs_of_one_shape_share_their_set_of_given_fields(config: Config) -> None:
    """A copy's own set of given field names is about 500 B per job: jobs written alike share one (the specs
    are frozen, so nothing adds to it), and each still equals the full validation's spec."""
    judged = Judge(config)
    specs = []
    for minute in (1, 2):
        entry = _entry({"every": "1h", "call": "app.tasks:send", "start": f"2026-01-01T00:0{minute}:00Z"})
        spec, _ = judged(f"job{minute}", entry)
        full, _ = judge(config, f"job{minute}", entry)
        assert spec is not None and spec == full
        specs.append(spec)
    assert judged.fast == 2
    assert specs[0].__pydantic_fields_set__ is specs[1].__pydantic_fields_set__


@pytest.mark.parametrize(
    "variants",
    [
        [{"kwargs": {"a": 1, "b": 2}}, {"kwargs": {"b": 2, "a": 1}}],
        [{"args": [{"x": 1, "y": [1, {"p": 1, "q": 2}]}]}, {"args": [{"x": 1, "y": [1, {"q": 2, "p": 1}]}]}],
    ],
    ids=["kwargs", "nested"],
)
def test_nested_key_order_is_part_of_the_shape(config: Config, variants: list[dict[str, Any]]) -> None:
    """Entries equal but for the order of a nested mapping's keys (another JSON, another job digest) each get
    the full validation's digest, whichever of them was judged first."""
    judged = Judge(config)
    for index, extra in enumerate(variants * 2):
        entry = _entry({"every": "1h", "call": "app.tasks:send", **extra})
        spec, _ = judged(f"job{index}", entry)
        full, _ = judge(config, f"job{index}", entry)
        assert spec is not None and full is not None
        assert spec.digest == full.digest and list(spec.kwargs) == list(full.kwargs), extra
    assert judged.fast == 4
