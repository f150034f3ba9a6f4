"""Local Redis Clusters for tests: ``redis-server --cluster-enabled yes`` nodes on free ports.

``LocalCluster`` starts N masters (and optionally R replicas per master) from the
``RedisServer`` helper, each node in its own temporary directory with its own
``nodes.conf`` and an explicit cluster bus port (``--cluster-port``, so no node needs
port + 10000 to be free), joins them with ``redis-cli --cluster create``, and waits until
every node reports ``cluster_state:ok`` and knows every other node. The conformance suite
shares one 3-master cluster per test session (``cluster_url_for_test()`` gives each test
its own key prefix on it, like ``redis_url_for_test``); failover tests start their own.

Without ``redis-server`` or ``redis-cli`` the cluster tests are skipped with a message,
except when ``CI`` is set: then they fail.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import time
from dataclasses import dataclass

import pytest

import redis
from tests.redis_server import RedisServer, free_port, test_prefix


def redis_cli_binary() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        message = "redis-cli is not on PATH: install it (apt-get install redis-tools)"
        if os.environ.get("CI"):
            pytest.fail(message + " (required when CI is set)")
        pytest.skip(message)
    return found


@dataclass(frozen=True)
class NodeState:
    """One line of CLUSTER NODES, as seen by a node that is still up."""

    node_id: str
    port: int
    role: str  # "master" or "slave"
    master_id: str  # "-" for a master
    failed: bool
    slots: int  # how many slots it serves (masters)


class LocalCluster:
    def __init__(
        self,
        masters: int = 3,
        replicas: int = 0,
        *,
        node_timeout_ms: int = 5000,
        aof: bool = False,
        extra: list[str] | None = None,
    ) -> None:
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisServer] = []
        for _ in range(masters * (1 + replicas)):
            node = RedisServer(aof=aof, appendfsync="everysec")
            node.extra = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(free_port()),
                "--cluster-node-timeout", str(node_timeout_ms),
                *(extra or []),
            ]  # fmt: skip
            self.nodes.append(node)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> LocalCluster:
        cli = redis_cli_binary()
        try:
            for node in self.nodes:
                node.start()
            create = [cli, "--cluster", "create"]
            create += [f"127.0.0.1:{node.port}" for node in self.nodes]
            create += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
            done = subprocess.run(create, capture_output=True, timeout=timeout, check=False)
            if done.returncode != 0:
                raise RuntimeError(
                    f"redis-cli --cluster create failed:\n{done.stdout.decode()[-2000:]}"
                    f"\n{done.stderr.decode()[-2000:]}"
                )
            self.wait_until_ok(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def wait_until_ok(
        self, timeout: float = 60.0, *, nodes: list[RedisServer] | None = None
    ) -> None:
        """Until every live node says cluster_state:ok, knows every node, and sees every
        slot served by a master it does not consider failed."""
        live = nodes or [n for n in self.nodes if n.process is not None]
        deadline = time.monotonic() + timeout
        problem = "not checked"
        while time.monotonic() < deadline:
            problem = self._problem(live)
            if not problem:
                return
            time.sleep(0.05)
        raise RuntimeError(f"cluster not ready after {timeout} s: {problem}")

    def _problem(self, live: list[RedisServer]) -> str:
        problem = self._state_problem(live)
        if problem or not self.replicas:
            return problem
        # Replicas are told whom to follow after the slots are assigned: wait until each
        # follows a master and has synchronised with it, or a failover could find none.
        states = self.node_states()
        serving = [s for s in states if s.role == "master" and s.slots and not s.failed]
        following = [s for s in states if s.role == "slave" and not s.failed]
        if len(serving) != self.masters or len(following) < len(live) - self.masters:
            return f"{len(serving)} masters serve slots, {len(following)} replicas follow one"
        for state in following:
            with redis.Redis(port=state.port, socket_timeout=2) as client:
                link = client.info("replication").get("master_link_status")
            if link != "up":
                return f"replica {state.port}: master link {link}"
        return ""

    def _state_problem(self, live: list[RedisServer]) -> str:
        for node in live:
            try:
                with redis.Redis(port=node.port, socket_timeout=2) as client:
                    info = client.execute_command("CLUSTER", "INFO")
            except redis.RedisError as exc:
                return f"node {node.port}: {exc}"
            text = info.decode() if isinstance(info, bytes) else str(info)
            fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            if fields.get("cluster_state") != "ok":
                return f"node {node.port}: cluster_state {fields.get('cluster_state')}"
            if int(fields.get("cluster_known_nodes", 0)) != len(self.nodes):
                return f"node {node.port} knows {fields.get('cluster_known_nodes')} nodes"
            if int(fields.get("cluster_slots_ok", 0)) != 16384:
                return f"node {node.port}: {fields.get('cluster_slots_ok')} slots ok"
        return ""

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    # -- addresses -----------------------------------------------------------------------

    def url(self, prefix: str | None = None, **options: str) -> str:
        query = {"prefix": prefix, **options} if prefix else options
        text = "&".join(f"{k}={v}" for k, v in query.items())
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[: self.masters])
        return f"redis+cluster://{seeds}/" + (f"?{text}" if text else "")

    # -- inspection and faults -----------------------------------------------------------

    def node_states(self) -> list[NodeState]:
        """CLUSTER NODES as seen by the first live node."""
        for node in self.nodes:
            if node.process is None:
                continue
            with redis.Redis(port=node.port, socket_timeout=2) as client:
                raw = client.execute_command("CLUSTER", "NODES")  # split: the raw text
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            return [_parse_node(line) for line in text.splitlines() if line.strip()]
        raise RuntimeError("no live node")

    def server(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def master_of_slot(self, slot: int) -> RedisServer:
        for node in self.nodes:
            if node.process is None:
                continue
            with redis.Redis(port=node.port, socket_timeout=2) as client:
                for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                    if start <= slot <= end:
                        return self.server(int(master[1]))
        raise RuntimeError(f"no node serves slot {slot}")


def _parse_node(line: str) -> NodeState:
    parts = line.split()
    flags = parts[2].split(",")
    slots = 0
    for spec in parts[8:]:
        if spec.startswith("["):
            continue
        low, _, high = spec.partition("-")
        slots += int(high or low) - int(low) + 1
    return NodeState(
        node_id=parts[0],
        port=int(parts[1].split("@")[0].rsplit(":", 1)[1]),
        role="master" if "master" in flags else "slave",
        master_id=parts[3],
        failed="fail" in flags or "fail?" in flags,
        slots=slots,
    )


_session: LocalCluster | None = None


def session_cluster() -> LocalCluster:
    """One 3-master cluster for the whole test session, started on first use."""
    global _session  # noqa: PLW0603 - one cluster per test process, stopped at exit
    if _session is None:
        _session = LocalCluster().start()
        atexit.register(_session.close)
    return _session


def cluster_url_for_test(**options: str) -> str:
    return session_cluster().url(test_prefix(), **options)
