"""Hostile or accidental input (alias bombs, huge or non-UTF-8 files, deep nesting) is refused at once with a
located error, and configs that are usable but suspicious (an include that matches nothing, no jobs) warn."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

from beatd import defaults
from beatd.config import load_config
from tests.conftest import REPO, WriteFiles

GOOD_JOB = "jobs:\n  a: {call: m:f, every: 1m}\n"

# The classic "billion laughs": 342 bytes that expand to 9**9 (387 million) strings.
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]\n" for previous, name in pairwise("abcdefghi")
)
# The same through merge keys, in a drop-in file: every level merges nine copies of the one below.
MERGE_BOMB = "x-a: &a {k0: lol, k1: lol, k2: lol, k3: lol, k4: lol, k5: lol, k6: lol, k7: lol, k8: lol}\n" + "".join(
    f"x-{name}: &{name} {{<<: [{', '.join([f'*{previous}'] * 9)}]}}\n" for previous, name in pairwise("abcdefghi")
)
MEMORY_LIMIT = 2 * 2**30  # the old code filled memory: let it fail fast in the test instead of the machine


def _run_check(config: Path, *options: str) -> tuple[subprocess.CompletedProcess[bytes], float]:
    """`beatd check` in a subprocess with bounded memory; the result and its wall-clock seconds."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("BEATD_")}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "beatd", "check", *options, "-c", str(config)],
        capture_output=True,
        cwd=REPO,
        env=environment,
        timeout=120,
        check=False,
        preexec_fn=_bounded_memory,
    )
    return result, time.monotonic() - started


def _bounded_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _write_bytes(directory: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_bytes(data)
    return directory / next(iter(files))


# (id, files as bytes, fragments of stderr; "{dir}" is the temporary directory)
REFUSED: list[tuple[str, dict[str, bytes], list[str]]] = [
    (
        "billion-laughs",
        {"main.yaml": BOMB.encode()},
        ["{dir}/main.yaml:6:17: aliases expand the file by more than 1.0 MiB (a YAML alias bomb?)"],
    ),
    (
        "merge-key-bomb-in-drop-in",
        {"main.yaml": b"include: [d/*.yaml]\n" + GOOD_JOB.encode(), "d/bomb.yaml": MERGE_BOMB.encode()},
        ["{dir}/d/bomb.yaml:6:19: aliases expand the file by more than 1.0 MiB"],
    ),
    (
        "long-string-aliased-many-times",  # few nodes, but megabytes once written out (in the digest, in messages)
        {
            "main.yaml": b'x-s: &s "'
            + b"x" * 10_000
            + b'"\njobs:\n  a: {call: m:f, every: 1m, tags: ['
            + b", ".join([b"*s"] * 200)
            + b"]}\n"
        },
        ["{dir}/main.yaml:3:452: aliases expand the file by more than 1.0 MiB"],
    ),
    (
        "alias-inside-its-own-anchor",
        {"main.yaml": b"jobs: &loop\n  a: {call: m:f, every: 1m, kwargs: {again: *loop}}\n"},
        ["{dir}/main.yaml:2:45: alias *loop refers to a node that contains it"],
    ),
    (
        "not-utf-8",  # Latin-1: the "ç" itself is the first bad byte
        {"main.yaml": GOOD_JOB.encode() + '    description: "ça va \xff"\n'.encode("latin-1")},
        ["{dir}/main.yaml:3:19: not UTF-8: byte 0xe7 cannot be decoded; save the file as UTF-8"],
    ),
    (
        "not-utf-8-later-on-the-line",  # the column counts characters: the two-byte "ç" before is one
        {"main.yaml": GOOD_JOB.encode() + '    description: "ça va"  # '.encode() + b"\xff\n"},
        ["{dir}/main.yaml:3:29: not UTF-8: byte 0xff cannot be decoded"],
    ),
    (
        "not-utf-8-in-drop-in",
        {"main.yaml": b"include: [d/*.yaml]\n" + GOOD_JOB.encode(), "d/latin1.yaml": b"jobs:\n  b\xe9: {}\n"},
        ["{dir}/d/latin1.yaml:2:4: not UTF-8: byte 0xe9"],
    ),
    (
        "control-character-after-multibyte-text",  # libyaml counts bytes; the column counts characters
        {"main.yaml": 'jobs:\n  a: {call: m:f, every: 1m, description: "ééé\x00"}\n'.encode()},
        ["{dir}/main.yaml:2:46: malformed YAML: unacceptable character #x0000: control characters are not allowed"],
    ),
    (
        "nested-too-deep",
        {"main.yaml": b"jobs:\n  a: {call: m:f, every: 1m, kwargs: {x: " + b"[" * 900 + b"]" * 900 + b"}}\n"},
        ["{dir}/main.yaml:2:138: jobs.a: nested deeper than 100 levels"],
    ),
]


@pytest.mark.parametrize(("files", "expected"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_refused_input_is_located_and_quick(tmp_path: Path, files: dict[str, bytes], expected: list[str]) -> None:
    """`beatd check` refuses each hostile file with one located problem and exit 2, quickly, without a
    traceback and within bounded memory."""
    result, seconds = _run_check(_write_bytes(tmp_path, files), "--no-import")
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr and "MemoryError" not in stderr
    for fragment in expected:
        assert fragment.format(dir=tmp_path) in stderr, stderr
    assert stderr.rstrip().endswith("1 problem found; nothing was applied"), stderr
    assert seconds < 30, f"took {seconds:.1f}s"  # generous for a loaded machine; the old code never finished


def test_alias_bomb_refused_in_well_under_a_second(write_files: WriteFiles) -> None:
    """Loading the alias bomb fails after milliseconds of work, not after expanding it (timed in a child
    process with bounded memory, so a regression cannot fill this one)."""
    config = write_files({"main.yaml": BOMB})
    timed = (
        "import sys, time\n"
        "from beatd.config import load_config\n"
        "from beatd.errors import ConfigError\n"
        "started = time.process_time()\n"
        "try:\n"
        "    load_config(__import__('pathlib').Path(sys.argv[1]), {})\n"
        "except ConfigError as error:\n"
        "    print(time.process_time() - started, error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", timed, str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
        preexec_fn=_bounded_memory,
    )
    seconds, _, message = result.stdout.partition(" ")
    assert result.returncode == 0 and "alias bomb" in message, result.stderr[-2000:]
    assert float(seconds) < 1.0


@pytest.mark.parametrize("source", ["sparse-file", "device"])
def test_file_larger_than_the_cap_is_refused(tmp_path: Path, source: str) -> None:
    """A file (or a device such as /dev/zero) past CONFIG_MAX_BYTES is refused without reading it all."""
    if source == "device":
        config = Path("/dev/zero")
        if not config.exists():
            pytest.skip("no /dev/zero")
    else:
        config = tmp_path / "huge.yaml"
        with config.open("wb") as file:
            file.truncate(defaults.CONFIG_MAX_BYTES + 1)
    result, _ = _run_check(config, "--no-import")
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert f"{config}: file is larger than 64 MiB, the most a config may be" in stderr
    assert "Traceback" not in stderr


def test_aliases_shared_across_many_jobs_still_load(write_files: WriteFiles) -> None:
    """An anchor merged into thousands of jobs adds more than CONFIG_ALIAS_BYTES but only a few times the
    file's size, so it stays valid."""
    tags = ", ".join(f"tag{index}" for index in range(40))
    body = "".join(f"  job{index}: {{<<: *base, command: [x], every: 1m}}\n" for index in range(5_000))
    text = f"x-base: &base {{timeout: 5m, retries: 2, tags: [{tags}]}}\njobs:\n{body}"
    assert 5_000 * len(tags) > defaults.CONFIG_ALIAS_BYTES
    config = load_config(write_files({"main.yaml": text}), {})
    assert len(config.jobs) == 5_000
    assert config.jobs["job4999"].tags == tuple(f"tag{index}" for index in range(40))


def test_nesting_within_the_bound_loads(write_files: WriteFiles) -> None:
    """JSON arguments nested a few dozen levels deep are still accepted."""
    depth = 50
    config = load_config(
        write_files(
            {"main.yaml": "jobs:\n  a: {call: m:f, every: 1m, kwargs: {x: " + "[" * depth + "]" * depth + "}}\n"}
        ),
        {},
    )
    value = config.jobs["a"].kwargs["x"]
    for _ in range(depth - 1):
        value = value[0]
    assert value == []


# (id, files, warnings as printed; "{dir}" is the temporary directory)
WARNED: list[tuple[str, dict[str, str], list[str]]] = [
    (
        "include-glob-matches-nothing",
        {"main.yaml": "include: [jobs.d/*.yaml]\n" + GOOD_JOB},
        ["{dir}/main.yaml:1:11: warning: include[0]: the pattern matches no file: {dir}/jobs.d/*.yaml"],
    ),
    (
        "empty-file",
        {"main.yaml": ""},
        ["{dir}/main.yaml:1:1: warning: the config declares no jobs: nothing will be scheduled"],
    ),
    (
        "empty-jobs",
        {"main.yaml": "namespace: x\njobs: {}\n"},
        ["{dir}/main.yaml:2:7: warning: jobs: the config declares no jobs: nothing will be scheduled"],
    ),
    (
        "both",
        {"main.yaml": "namespace: x\ninclude: [a/*.yaml, b/*.yaml]\n", "b/one.yaml": "x-note: no jobs here\n"},
        [
            "{dir}/main.yaml:1:1: warning: the config declares no jobs: nothing will be scheduled",
            "{dir}/main.yaml:2:11: warning: include[0]: the pattern matches no file: {dir}/a/*.yaml",
        ],
    ),
    ("jobs-only-in-a-drop-in", {"main.yaml": "include: [d/*.yaml]\n", "d/jobs.yaml": GOOD_JOB}, []),
    ("ordinary", {"main.yaml": "include: [d/*.yaml]\n" + GOOD_JOB, "d/more.yaml": "jobs: {}\n"}, []),
]


@pytest.mark.parametrize(("files", "expected"), [case[1:] for case in WARNED], ids=[case[0] for case in WARNED])
def test_config_warnings(write_files: WriteFiles, files: dict[str, str], expected: list[str]) -> None:
    """An include glob that matches no file and a config without jobs load, each with a located warning."""
    config = write_files(files)
    loaded = load_config(config, {})
    assert [warning.as_warning() for warning in loaded.warnings] == [
        text.format(dir=config.parent) for text in expected
    ]


def test_check_prints_warnings_and_strict_refuses(write_files: WriteFiles) -> None:
    """`beatd check` prints warnings to stderr and exits 0; `check --strict` reports them as problems, exit 2."""
    config = write_files({"main.yaml": "include: [jobs.d/*.yaml]\n"})
    where, pattern = f"{config}:1:11", f"{config.parent}/jobs.d/*.yaml"
    result, _ = _run_check(config)
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, stderr
    assert stderr.splitlines() == [
        f"{config}:1:1: warning: the config declares no jobs: nothing will be scheduled",
        f"{where}: warning: include[0]: the pattern matches no file: {pattern}",
    ]
    assert stdout.startswith(f"{config}: ok, 0 jobs, 2 warnings (digest ")

    result, _ = _run_check(config, "--strict")
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 2, stderr
    assert stdout == ""
    assert stderr.splitlines() == [
        f"{config}:1:1: the config declares no jobs: nothing will be scheduled",
        f"{where}: include[0]: the pattern matches no file: {pattern}",
        "beatd: 2 problems found; nothing was applied",
    ]


def test_strict_check_passes_a_config_without_warnings(write_files: WriteFiles) -> None:
    """`beatd check --strict` on a config without warnings is ok, with nothing on stderr."""
    result, _ = _run_check(write_files({"main.yaml": GOOD_JOB}), "--strict", "--no-import")
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
