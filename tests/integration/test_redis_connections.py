"""Beat and worker over TLS with a test CA, as an ACL user, and through Redis Sentinel across a failover."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from beatd.localredis import find_redis_server, free_port
from tests.conftest import REPO
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import runs

JOBS = "jobs:\n  tick: {call: tests.worker_jobs:noop, every: 500ms, overlap: allow}\n"


def _succeeded(client: redis.Redis, namespace: str) -> int:
    return sum(1 for record in runs(client, namespace, "tick") if record["status"] == "succeeded")


def _start(args: list[str], directory: Path, port: int, check: Callable[[], bool]) -> subprocess.Popen[bytes]:
    binary = find_redis_server()
    assert binary is not None
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([binary, *args, "--dir", str(directory), "--save", "", "--logfile",
                                str(directory / f"{port}.log")], stdout=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 10
    while not check():
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"redis on port {port} did not start: {(directory / f'{port}.log').read_text()[-2000:]}")
        time.sleep(0.05)
    return process


def _answers(**options: object) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return bool(redis.Redis(socket_timeout=0.5, **options).ping())  # type: ignore[arg-type]
        except (redis.RedisError, OSError):
            return False

    return check


def _config(tmp_path: Path, namespace: str, redis_yaml: str) -> Path:
    path = tmp_path / "beatd.yaml"
    path.write_text(
        f"namespace: {namespace}\npythonpath: ['{REPO}']\nleader: {{lease: 2s}}\nworker: {{kill_grace: 500ms}}\n"
        + textwrap.dedent(redis_yaml)
        + JOBS
    )
    return path


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Server processes to stop after the test."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.terminate()
        process.wait(10)


@pytest.fixture
def certificates(tmp_path: Path) -> dict[str, Path]:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path / "tls"
    folder.mkdir()

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=beatd-test-ca")  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
            f"/CN={name}")  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            f"{name}.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return {name: folder / name for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


def test_tls_with_client_certificates(
    tmp_path: Path, namespace: str, daemons: Callable[..., Daemon], processes: list[subprocess.Popen[bytes]],
    certificates: dict[str, Path],
) -> None:  # fmt: skip
    """rediss:// with a CA file and a client certificate: the beat emits and the worker runs over TLS."""
    port = free_port()
    tls = {"ssl": True, "ssl_ca_certs": str(certificates["ca.crt"]), "ssl_certfile": str(certificates["client.crt"]),
           "ssl_keyfile": str(certificates["client.key"])}  # fmt: skip
    try:
        processes.append(_start(
            ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(certificates["server.crt"]),
             "--tls-key-file", str(certificates["server.key"]), "--tls-ca-cert-file", str(certificates["ca.crt"]),
             "--tls-auth-clients", "yes"],
            tmp_path / "redis", port, _answers(port=port, **tls),
        ))  # fmt: skip
    except pytest.fail.Exception:
        pytest.skip("this redis-server has no TLS support")
    config = _config(tmp_path, namespace, f"""\
        redis:
          url: rediss://127.0.0.1:{port}/0
          tls: {{ca_file: '{certificates["ca.crt"]}', cert_file: '{certificates["client.crt"]}',
                key_file: '{certificates["client.key"]}'}}
    """)  # fmt: skip
    daemons("beat", "-c", str(config), name="beat")
    daemons("worker", "-c", str(config), name="worker")
    client = redis.Redis(port=port, decode_responses=True, **tls)  # type: ignore[arg-type]
    wait_for(lambda: _succeeded(client, namespace) >= 3, what="runs over TLS")


def test_acl_user(
    tmp_path: Path, namespace: str, daemons: Callable[..., Daemon], processes: list[subprocess.Popen[bytes]]
) -> None:
    """An ACL user limited to the namespace's keys, given in the URL, is all beat and worker need."""
    port = free_port()
    acl = ["--user", "default", "off", "--user", "beatd", "on", ">s3cret", f"~{namespace}:*", "+@all", "-@dangerous",
           "+scan"]  # fmt: skip
    processes.append(_start(["--port", str(port), *acl], tmp_path / "redis", port,
                            _answers(port=port, username="beatd", password="s3cret")))  # fmt: skip
    config = _config(
        tmp_path, namespace, f"redis: {{url: 'redis://beatd:${{BEATD_TEST_PASSWORD}}@127.0.0.1:{port}/0'}}\n"
    )
    environment = {"BEATD_TEST_PASSWORD": "s3cret"}
    daemons("beat", "-c", str(config), env=environment, name="beat")
    daemons("worker", "-c", str(config), env=environment, name="worker")
    client = redis.Redis(port=port, username="beatd", password="s3cret", decode_responses=True)
    wait_for(lambda: _succeeded(client, namespace) >= 3, what="runs as an ACL user")
    assert not _answers(port=port)()  # the default user is off: nobody gets in without the password


def test_sentinel_failover_mid_run(
    tmp_path: Path, namespace: str, daemons: Callable[..., Daemon], processes: list[subprocess.Popen[bytes]]
) -> None:
    """Through Sentinel, beat and worker follow a failover of the master to its replica and carry on."""
    master, replica, sentinel = free_port(), free_port(), free_port()
    folder = tmp_path / "redis"
    processes.append(_start(["--port", str(master), "--appendonly", "yes", "--repl-diskless-sync-delay", "0"],
                            folder / "master", master, _answers(port=master)))  # fmt: skip
    processes.append(_start(["--port", str(replica), "--replicaof", "127.0.0.1", str(master)], folder / "replica",
                            replica, _answers(port=replica)))  # fmt: skip
    sentinel_conf = folder / "sentinel.conf"
    sentinel_conf.write_text(
        f"port {sentinel}\nsentinel monitor main 127.0.0.1 {master} 1\n"
        "sentinel down-after-milliseconds main 1000\nsentinel failover-timeout main 5000\n"
    )
    binary = find_redis_server()
    assert binary is not None
    processes.append(subprocess.Popen([binary, str(sentinel_conf), "--sentinel"], stdout=subprocess.DEVNULL))
    watcher = redis.Redis(port=sentinel, decode_responses=True)
    wait_for(lambda: _answers(port=sentinel)() and watcher.sentinel_master("main")["num-slaves"] >= 1,
             timeout=15, what="sentinel sees the replica")  # fmt: skip
    config = _config(tmp_path, namespace, f"""\
        redis:
          url: redis://ignored:6379/0
          sentinel: {{hosts: ['127.0.0.1:{sentinel}'], master: main}}
    """)  # fmt: skip
    daemons("beat", "-c", str(config), name="beat")
    daemons("worker", "-c", str(config), name="worker")
    first = redis.Redis(port=master, decode_responses=True)
    second = redis.Redis(port=replica, decode_responses=True)
    wait_for(lambda: _succeeded(first, namespace) >= 3, what="runs before the failover")
    wait_for(lambda: second.info("replication")["master_link_status"] == "up", what="the replica in sync")
    watcher.execute_command("SENTINEL", "FAILOVER", "main")
    wait_for(lambda: int(watcher.sentinel_master("main")["port"]) == replica, timeout=60, what="failover")
    promoted = redis.Redis(port=replica, decode_responses=True)
    before = _succeeded(promoted, namespace)
    wait_for(lambda: _succeeded(promoted, namespace) >= before + 5, timeout=30, what="runs after the failover")
