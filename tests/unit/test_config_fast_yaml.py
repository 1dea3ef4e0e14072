"""The fast YAML path (values from the event stream, no node tree) reads what the positioned path reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from beatd.config import load_config
from beatd.config.plainyaml import GAVE_UP, plain_values
from beatd.config.yamlsource import _LOADER, _parse_positioned, parse_yaml
from beatd.errors import ConfigError

ENVIRON = {"URL": "redis://localhost:6379/0", "NUMBER": "5", "EMPTY": ""}

READ_FAST = [
    "",
    "---\n",
    "# only a comment\n",
    "plain",
    "a: 1\nb: [1, 2.5, true, null, ~, 0x10, 0o17, 1_000, 1:30, .inf, '3', \"x\", yes, Off]\n",
    "when: 2026-01-01\nat: 2026-01-01T10:00:00Z\n",
    "url: ${URL}\nn: ${NUMBER}\nq: '${NUMBER}'\nd: ${MISSING:-7}\ne: ${EMPTY}\n",
    "[1, {a: [2, {b: c}]}, []]\n",
    "=: 1\n1: one\ntrue: yes\n",
    "jobs:\n  a: {every: 10s, command: [\"true\"]}\n  b:\n    cron: '0 * * * *'\n    call: m:f\n",
    "text: |\n  two\n  lines\nfolded: >\n  one\n  line\n",
    "!!map {a: !!seq [1]}\n",
]

NEED_POSITIONS = [
    "a: 1\na: 2\n",  # duplicate key
    "x: &a 1\ny: *a\n",  # anchor and alias
    "<<: {a: 1}\n",  # merge key
    "!!str 1: x\n",  # tagged key
    "a: !custom x\n",  # unsupported tag
    "a: 1\n---\nb: 2\n",  # two documents
    "a: [\n",  # malformed
    "? [1]\n: 2\n",  # a list as a key
    "a: ${MISSING}\n",  # unset variable
    "a: !!binary aGk=\n",  # a tag beatd does not read
    "[" * 101 + "]" * 101 + "\n",  # deeper than CONFIG_MAX_DEPTH
]


@pytest.mark.parametrize("text", READ_FAST)
def test_fast_path_values_are_the_positioned_paths(text: str) -> None:
    """A document the fast path reads gives the same values, of the same types, as the positioned path."""
    fast = plain_values(text, ENVIRON, _LOADER)
    slow, problems = _parse_positioned("f.yaml", text, ENVIRON)
    assert fast is not GAVE_UP
    assert not problems
    assert repr(fast) == repr(slow.value)


@pytest.mark.parametrize("text", NEED_POSITIONS)
def test_fast_path_gives_up_on_what_needs_positions(text: str) -> None:
    """Anything that may be a problem or needs the node tree is left to the positioned path."""
    assert plain_values(text, ENVIRON, _LOADER) is GAVE_UP


def test_fast_document_locates_like_a_positioned_one() -> None:
    """A fast-path document composes its nodes only when asked, and reports the same positions."""
    text = "namespace: x\njobs:\n  a:\n    every: 10s\n    command: [\"true\", 1]\n  b: {cron: '* * * * *'}\n"
    fast, problems = parse_yaml("f.yaml", text, ENVIRON)
    slow, _ = _parse_positioned("f.yaml", text, ENVIRON)
    assert not problems
    assert fast._value_nodes is None  # nothing composed yet
    for path in [("jobs",), ("jobs", "a", "every"), ("jobs", "a", "command", 1), ("jobs", "b", "cron")]:
        assert fast.position(path) == slow.position(path)
        assert fast.position(path, at_key=True) == slow.position(path, at_key=True)
    assert fast.problem(("jobs", "b", "nope"), "m") == slow.problem(("jobs", "b", "nope"), "m")


def test_problems_in_a_fast_read_file_are_located(tmp_path: Path) -> None:
    """A job that fails validation in a file read by the fast path is reported at its file:line:col."""
    path = tmp_path / "beatd.yaml"
    path.write_text('jobs:\n  ok: {every: 10s, command: ["true"]}\n  bad:\n    every: 10s\n    comand: ["true"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    located = {(problem.line, problem.column, problem.path) for problem in caught.value.problems}
    assert (5, 5, "jobs.bad.comand") in located


def test_equal_parts_of_specs_are_shared(tmp_path: Path) -> None:
    """Jobs written alike share their durations, argv, policies and interval trigger, and not their names."""
    path = tmp_path / "beatd.yaml"
    path.write_text("jobs:\n" + "".join(f'  j{i}: {{every: 10s, command: ["true"]}}\n' for i in range(3)))
    config = load_config(path, {})
    first, *others = config.jobs.values()
    for spec in others:
        assert spec.every is first.every and spec.command is first.command and spec.history is first.history
        assert spec.trigger() is first.trigger()
        assert spec.name != first.name and spec.digest != first.digest


def test_config_digest_is_the_whole_jobs_serialisation(tmp_path: Path) -> None:
    """The config digest, hashed job by job, equals the hash of all jobs serialised at once (as replicas of
    earlier versions compute it), so mixed versions agree on it."""
    import hashlib

    from pydantic import TypeAdapter

    from beatd.config import JobSpec

    path = tmp_path / "beatd.yaml"
    path.write_text(
        'jobs:\n  b: {every: 10s, command: ["true"], tags: [x]}\n'
        "  a: {cron: '5 * * * *', call: m:f, kwargs: {k: 1}}\n"
    )
    config = load_config(path, {})
    whole = TypeAdapter(dict[str, JobSpec]).dump_json({name: config.jobs[name] for name in sorted(config.jobs)})
    assert config.digest == hashlib.sha256(whole).hexdigest()[:16]


def test_a_large_file_kept_packed_still_locates_its_problems(tmp_path: Path) -> None:
    """The text of a file past ``PACK_ABOVE`` is kept compressed after a fast read, and a problem found in it
    (here by validation, after the read) is still located at its own line and column."""
    from beatd.config.yamlsource import PACK_ABOVE

    lines = [f'  job{index}: {{every: 10s, command: ["true"]}}\n' for index in range(3000)]
    lines[2500] = '  job2500: {every: 10s, comand: ["true"]}\n'
    text = "jobs:\n" + "".join(lines)
    assert len(text) > PACK_ABOVE
    source, problems = parse_yaml("big.yaml", text, {})
    assert not problems and isinstance(source._text, bytes)
    assert source.position(("jobs", "job2500", "comand"), at_key=True) == (2502, 25)
    path = tmp_path / "big.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path, {})
    located = {(problem.line, problem.column, problem.path) for problem in error.value.problems}
    assert (2502, 25, "jobs.job2500.comand") in located
