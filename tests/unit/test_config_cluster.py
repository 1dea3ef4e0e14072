"""``redis.cluster``: the tagged layout, and the connections a Redis Cluster cannot have refused where written."""

from __future__ import annotations

import subprocess

import pytest

from beatd.config import load_config
from tests.conftest import WriteFiles, run_cli

JOB = "jobs:\n  a: {call: m:f, every: 1h}\n"
CELERY_JOB = "jobs:\n  a: {celery: app.tasks.a, every: 1h}\n"

# (id, YAML, a fragment of the located message)
CASES = [
    (
        "with-sentinel",
        "redis: {url: 'redis://x:7000/0', sentinel: {hosts: ['s:26379'], master: m}, cluster: true}\n" + JOB,
        "main.yaml:1:86: redis.cluster: cluster and sentinel exclude each other",
    ),
    (
        "database-2",
        "redis: {url: 'redis://x:7000/2', cluster: true}\n" + JOB,
        "redis.cluster: a Redis Cluster has database 0 only: redis.url names database 2",
    ),
    (
        "unix-socket",
        "redis: {url: 'unix:///run/redis.sock', cluster: true}\n" + JOB,
        "redis.cluster: a Redis Cluster is reached over TCP",
    ),
    (
        "bad-seed",
        "redis: {url: 'redis://x:7000/0', cluster: true, cluster_nodes: ['y']}\n" + JOB,
        "redis.cluster_nodes: invalid cluster node address 'y': expected host:port",
    ),
    (
        "seeds-without-cluster",
        "redis: {url: 'redis://x:7000/0', cluster_nodes: ['y:7001']}\n" + JOB,
        "redis.cluster_nodes: cluster_nodes names seed nodes of a Redis Cluster: set redis.cluster: true too",
    ),
    (
        "celery-broker-is-the-seed",
        "redis: {url: 'redis://10.0.0.5:7000/0', cluster: true}\ncelery: {broker_url: 'redis://10.0.0.5:7000/1'}\n"
        + CELERY_JOB,
        "celery.broker_url: redis://10.0.0.5:7000/1 is a node of beatd's Redis Cluster",
    ),
    (
        "celery-broker-is-another-seed",
        "redis: {url: 'redis://10.0.0.5:7000/0', cluster: true, cluster_nodes: ['10.0.0.6:7001']}\n"
        "celery: {broker_url: 'redis://10.0.0.6:7001/0'}\n" + CELERY_JOB,
        "celery.broker_url: redis://10.0.0.6:7001/0 is a node of beatd's Redis Cluster",
    ),
]


@pytest.mark.parametrize(("text", "fragment"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_connection_a_cluster_cannot_have_exits_2_located(write_files: WriteFiles, text: str, fragment: str) -> None:
    """`beatd check` refuses each cluster setting that cannot work with exit 2, located, and no traceback."""
    config = write_files({"main.yaml": text})
    result = run_cli("check", "-c", str(config))
    _assert_refused(result, fragment)


def test_cluster_selects_the_tagged_layout_with_one_shard(write_files: WriteFiles) -> None:
    """With ``redis.cluster`` every key of the one shard carries the hash tag ``{ns:0}``; without it the keys stay
    plain; a Celery broker on another server is accepted (the outbox serves it)."""
    clustered = write_files(
        {"main.yaml": "redis: {url: 'redis://10.0.0.5:7000', cluster: true, cluster_nodes: ['10.0.0.6:7000']}\n"
         "namespace: prod\ncelery: {broker_url: 'redis://10.0.0.9:6379/0'}\n" + JOB}
    )  # fmt: skip
    config = load_config(clustered, {})
    assert config.tagged and config.keys().leader == "{prod:0}:leader"
    assert config.keys_of("a").progress == "{prod:0}:progress" and config.keys().replicas == "{prod:0}:replicas"
    assert config.settings.redis.cluster_nodes == ("10.0.0.6:7000",)
    plain = write_files({"other.yaml": "redis: {url: 'redis://10.0.0.5:7000'}\nnamespace: prod\n" + JOB})
    assert load_config(plain, {}).keys().leader == "prod:leader"


@pytest.mark.parametrize(
    ("node", "fragment"),
    [
        ("::1:7001", "invalid cluster node address '::1:7001'"),
        ("h/x:7001", "invalid cluster node address 'h/x:7001'"),
    ],
)
def test_a_seed_address_redis_cannot_read_exits_2_located(write_files: WriteFiles, node: str, fragment: str) -> None:
    """A ``redis.cluster_nodes`` entry that is no host:port redis-py can read (an unbracketed IPv6 address, a
    path) is refused where written, even with a Celery section (whose broker check reads every seed)."""
    config = write_files(
        {"main.yaml": f"redis: {{url: 'redis://10.0.0.5:7000/0', cluster: true, cluster_nodes: ['{node}']}}\n"
         "celery: {broker_url: 'redis://10.0.0.9:6379/0'}\n" + CELERY_JOB}
    )  # fmt: skip
    result = run_cli("check", "-c", str(config))
    _assert_refused(result, "redis.cluster_nodes", fragment)


def test_a_bracketed_ipv6_seed_is_accepted_and_connected_without_brackets() -> None:
    """``[::1]:7001`` is a valid seed; the cluster client is given the bare address (``::1``), which a socket
    can resolve."""
    import redis.cluster

    from beatd.config.model import RedisSettings
    from beatd.store.base import _seeds

    settings = RedisSettings(url="redis://10.0.0.5:7000/0", cluster=True, cluster_nodes=("[::1]:7001",))
    assert [(node.host, node.port) for node in _seeds(settings, redis.cluster.ClusterNode)] == [("::1", 7001)]


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("redis://127.0.0.1:7000/3", "--redis-url: a Redis Cluster has database 0 only"),
        ("unix:///run/redis.sock", "--redis-url: a Redis Cluster is reached over TCP"),
    ],
)
def test_a_redis_url_override_a_cluster_cannot_have_exits_2(write_files: WriteFiles, url: str, fragment: str) -> None:
    """``--redis-url`` replacing a cluster config's url is validated as the file's is: a database other than 0
    or a Unix socket is refused with exit 2 and no traceback (not a RedisClusterException from redis-py)."""
    config = write_files({"main.yaml": "redis: {url: 'redis://127.0.0.1:7000/0', cluster: true}\n" + JOB})
    result = run_cli("status", "-c", str(config), "--redis-url", url)
    _assert_refused(result, fragment)


def _assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 2, no traceback, and every fragment in what the command printed on stderr."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert all(fragment in result.stderr for fragment in fragments), result.stderr
