"""The leader's counting of applied writes: per series and per lag at once, the same figures as one by one."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram

from beatd.emission import Counters, Pending, account, observe_many
from beatd.metrics import Metrics
from beatd.store import ApplyResult, LeaderWrite


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("le", "")): sample.value
        for metric in histogram.collect()
        for sample in metric.samples
        if not sample.name.endswith("_created")
    }


@pytest.mark.parametrize("value", [0.0, 0.005, 0.0051, 0.3, 1.0, 7.5, 10_000.0])
def test_observe_many_moves_the_histogram_as_observing_one_by_one(value: float) -> None:
    """Observing a value n times in one step gives the buckets, count and sum of n observations (a value on a
    bound counts in that bound's bucket; one past every bound in +Inf's)."""
    one, many = (Histogram(f"lag_{n}", "lag", buckets=(0.005, 0.1, 1.0), registry=CollectorRegistry()) for n in (1, 2))
    for _ in range(7):
        one.observe(value)
    observe_many(many, value, 7)
    assert {(name.replace("lag_2", "lag_1"), le): v for (name, le), v in _samples(many).items()} == pytest.approx(
        _samples(one)
    )


def test_account_counts_applied_fires_per_series_and_observes_each_lag() -> None:
    """Applied emits are counted per job and trigger and their lags observed once each; duplicates counted,
    refused writes not counted at all."""
    metrics, counters = Metrics(jobs=2), Counters()
    write = LeaderWrite.emit
    pending = [
        Pending(write("a", 1, "q", "{}", "", "1 schedule d"), "schedule", 0.25),
        Pending(write("b", 1, "q", "{}", "", "1 schedule d"), "schedule", 0.25),
        Pending(write("a", 2, "q", "{}", "", "2 catchup d"), "catchup", 2.0),
        Pending(write("b", 2, "q", "{}", "", "2 schedule d"), "schedule", 3.0),
        Pending(write("b", 3, "q", "{}", "", "3 schedule d"), "schedule", 4.0),
    ]
    result = ApplyResult(True, ("applied", "applied", "applied", "duplicate", "refused"), ("",) * 4 + ("no",))
    account(pending, result, metrics, counters)
    assert (counters.emitted, counters.duplicates, counters.by_trigger) == (3, 1, {"schedule": 2, "catchup": 1})
    registry = metrics.registry
    assert registry.get_sample_value("beatd_fires_emitted_total", {"job": "a", "trigger": "catchup"}) == 1
    assert registry.get_sample_value("beatd_fires_emitted_total", {"job": "b", "trigger": "schedule"}) == 1
    assert registry.get_sample_value("beatd_emission_lag_seconds_count") == 3
    assert registry.get_sample_value("beatd_emission_lag_seconds_sum") == pytest.approx(2.5)
