"""A real local Redis Cluster (3 masters, 3 replicas on loopback ports), plus clients for assertions.

Six ``redis-server --cluster-enabled yes`` processes in a temporary directory, joined by ``redis-cli --cluster
create --cluster-replicas 1``. Each node's cluster bus port is chosen free as well (``--cluster-port``), so the
usual ``port + 10000`` never collides with another test's server.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.cluster import ClusterNode, RedisCluster

from beatd.errors import BeatdError
from beatd.localredis import find_redis_server, free_port, require_redis_server

__all__ = ["ClusterNodeProcess", "RedisClusterProcesses", "cluster_support"]

NODES = 6
"""Three masters and one replica each."""


def cluster_support() -> str | None:
    """Why no local cluster can start here (no redis-server, no redis-cli, no cluster mode), or None."""
    binary = find_redis_server()
    if binary is None:
        return "no redis-server"
    if shutil.which("redis-cli") is None:
        return "no redis-cli (redis-tools) to create the cluster"
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    major = version.partition(" v=")[2].partition(".")[0]
    if not major.isdigit() or int(major) < 7:
        return f"redis-server older than 7 (no --cluster-port): {version.strip()}"
    return None


@dataclass
class ClusterNodeProcess:
    """One cluster-enabled redis-server with its data and ``nodes.conf`` in ``directory``."""

    directory: Path
    port: int = field(default_factory=free_port)
    bus_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self, binary: str) -> None:
        """Spawn the process (without waiting: :meth:`RedisClusterProcesses.start` waits for all)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--cluster-port",
                str(self.bus_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--save",
                "",
                "--appendonly",
                "no",
                "--repl-diskless-sync-delay",
                "0",  # a replica's first sync starts at once (the default waits 5 s for more replicas)
                "--repl-ping-replica-period",
                "1",  # a node lists a replica in CLUSTER SLOTS once its offset moved: by this ping (default 10 s)
                "--protected-mode",
                "no",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def client(self) -> redis.Redis:
        """A decoding client to this one node (no redirections followed)."""
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def answers(self) -> bool:
        """True when the node answers PING."""
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def cluster_ok(self) -> bool:
        """True when this node sees ``cluster_state:ok``."""
        try:
            with self.client() as client:
                return bool(client.execute_command("CLUSTER INFO")["cluster_state"] == "ok")
        except redis.RedisError:
            return False

    def role(self) -> str:
        """``master`` or ``slave`` as the node itself reports it ('' when it does not answer)."""
        try:
            with self.client() as client:
                return str(client.info("replication")["role"])
        except redis.RedisError:
            return ""

    def replica_linked(self) -> bool:
        """True when this node is a replica and its link to its master is up."""
        try:
            with self.client() as client:
                info = client.info("replication")
        except redis.RedisError:
            return False
        return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")

    def slots_replicated(self) -> bool:
        """True when this node's ``CLUSTER SLOTS`` lists a master and a replica for every slot range."""
        try:
            with self.client() as client:
                ranges = client.execute_command("CLUSTER SLOTS")
        except redis.RedisError:
            return False
        if isinstance(ranges, dict):  # redis-py's parsed form: (start, end) -> {primary, replicas}
            return len(ranges) == NODES // 2 and all(entry.get("replicas") for entry in ranges.values())
        return len(ranges) == NODES // 2 and all(len(entry) >= 4 for entry in ranges)

    def kill(self) -> None:
        """SIGKILL (no shutdown save, no goodbye to the cluster) and wait for the exit."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; wait for the exit."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def distinct_free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on 127.0.0.1, each free a moment ago (all held open at once while chosen,
    so no two are the same)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


@dataclass
class RedisClusterProcesses:
    """A six-node cluster in ``directory``: start, wait for ``cluster_state:ok`` everywhere, stop by PID."""

    directory: Path
    nodes: list[ClusterNodeProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A ``redis://`` URL of one node (a cluster client discovers the rest)."""
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self, timeout: float = 30.0) -> None:
        """Start the six nodes, create the cluster and wait until every node reports ``cluster_state:ok``."""
        binary = require_redis_server()
        self.directory = self.directory.resolve()
        ports = distinct_free_ports(2 * NODES)
        self.nodes = [
            ClusterNodeProcess(self.directory / f"node-{index}", ports[2 * index], ports[2 * index + 1])
            for index in range(NODES)
        ]
        for node in self.nodes:
            node.start(binary)
        deadline = time.monotonic() + timeout
        self._wait(lambda: self._nodes_answer(binary), deadline, "every node to answer PING")
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=max(1.0, deadline - time.monotonic()),
            check=False,
        )
        if created.returncode != 0:
            raise BeatdError(f"redis-cli --cluster create failed: {created.stdout}{created.stderr}")
        self._wait(lambda: all(node.cluster_ok() for node in self.nodes), deadline, "cluster_state:ok on every node")
        self._wait(self._replicas_attached, deadline, "every master to have its replica")

    def _nodes_answer(self, binary: str) -> bool:
        """True when every node answers PING; a node that exited (its port taken by another test's server in
        the moment between choosing it and binding it) is started again on new ports."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is not None:
                node.port, node.bus_port = distinct_free_ports(2)
                (node.directory / "nodes.conf").unlink(missing_ok=True)
                node.start(binary)
        return all(node.answers() for node in self.nodes)

    def _replicas_attached(self) -> bool:
        """True when half the nodes are replicas whose replication link to their master is up, and every node's
        slot map names a replica for each slot range (so a client's first slot map already has them)."""
        return sum(node.replica_linked() for node in self.nodes) == NODES // 2 and all(
            node.slots_replicated() for node in self.nodes
        )

    @staticmethod
    def _wait(condition: Callable[[], bool], deadline: float, what: str) -> None:
        while not condition():
            if time.monotonic() > deadline:
                raise BeatdError(f"local Redis Cluster: timed out waiting for {what}")
            time.sleep(0.05)

    def startup_nodes(self) -> list[ClusterNode]:
        """Every node's address, for a cluster client built with options of its own."""
        return [ClusterNode("127.0.0.1", node.port) for node in self.nodes]

    def client(self) -> RedisCluster:
        """A decoding redis-py cluster client (follows MOVED and ASK, refreshes its slot map)."""
        return RedisCluster(startup_nodes=self.startup_nodes(), decode_responses=True)

    def node(self, port: int) -> ClusterNodeProcess:
        """The node listening on ``port``."""
        return next(node for node in self.nodes if node.port == port)

    def stop(self) -> None:
        """Stop every node by its PID."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisClusterProcesses:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
