"""Start-up checks: refuse a Redis that can lose jobs silently, warn about weaker setups.

One server is read with INFO and CONFIG GET (``inspect_server``) and judged by
``check_server``. A Redis Cluster is judged node by node, replicas included (any of them
may be promoted): every node must be new enough and must not evict keys; persistence
that is off anywhere is one warning naming the nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from genqueue.backends.redis.options import RedisOptions, safe_url
from genqueue.errors import ConfigError
from redis import exceptions as rex

log = logging.getLogger("genqueue.redis")
MIN_VERSION = (6, 2)
#: Sharded pub/sub (SPUBLISH), which the cluster's wake-ups use, came with Redis 7.0.
MIN_CLUSTER_VERSION = (7, 0)


@dataclass(frozen=True)
class ServerReport:
    version: str
    eviction_policy: str | None
    aof: bool | None
    rdb_save: str | None


async def inspect_server(redis: Redis) -> ServerReport:
    server = await redis.info("server")
    memory = await redis.info("memory")
    persistence = await redis.info("persistence")
    policy = memory.get("maxmemory_policy")
    save: str | None
    try:
        save = str((await redis.config_get("save")).get("save", ""))
    except rex.ResponseError:
        save = None  # CONFIG is disabled (managed Redis)
    aof = persistence.get("aof_enabled")
    return ServerReport(
        version=str(server.get("redis_version", "unknown")),
        eviction_policy=str(policy) if policy is not None else None,
        aof=bool(int(aof)) if aof is not None else None,
        rdb_save=save,
    )


def _check_version(report: ServerReport, where: str, minimum: tuple[int, int]) -> None:
    try:
        version = tuple(int(p) for p in report.version.split(".")[:2])
    except ValueError:
        version = minimum
    if version < minimum:
        needed = ".".join(map(str, minimum))
        raise ConfigError(f"Redis {report.version} at {where} is too old; genqueue needs {needed}+")


def _check_eviction(report: ServerReport, where: str, options: RedisOptions) -> None:
    policy = report.eviction_policy
    if policy is None:
        log.warning(
            "could not read maxmemory-policy of Redis at %s; make sure it is noeviction, "
            "or Redis may delete jobs when memory runs out",
            where,
        )
    elif policy != "noeviction":
        message = (
            f"Redis at {where} has maxmemory-policy {policy}: when memory runs out it "
            "deletes keys, which loses jobs and dead letters silently. Set "
            "`maxmemory-policy noeviction`, or accept the risk with ?allow_eviction=1."
        )
        if not options.allow_eviction:
            raise ConfigError(message)
        log.warning("%s (allowed by allow_eviction)", message)


def check_server(report: ServerReport, options: RedisOptions) -> None:
    """Refuse a Redis that can lose jobs silently; warn about weaker setups."""
    where = safe_url(options.url)
    _check_version(report, where, MIN_VERSION)
    log.info("connected to Redis %s at %s", report.version, where)
    _check_eviction(report, where, options)
    if report.aof is False and report.rdb_save == "":
        log.warning(
            "Redis at %s has persistence off (no AOF, no RDB save points): a restart "
            "loses every job. Enable `appendonly yes` for durable queues.",
            where,
        )
    elif report.aof is False and report.rdb_save is None:
        log.warning("could not check whether Redis at %s persists its data", where)


def check_cluster(reports: Mapping[str, ServerReport], options: RedisOptions) -> None:
    """The same checks on every node of a cluster (``reports``: node name -> report)."""
    for node, report in reports.items():
        _check_version(report, f"cluster node {node}", MIN_CLUSTER_VERSION)
        _check_eviction(report, f"cluster node {node}", options)
    versions = sorted({r.version for r in reports.values()})
    log.info(
        "connected to Redis Cluster %s at %s (%d nodes)",
        "/".join(versions),
        ", ".join(sorted(reports)),
        len(reports),
    )
    off = sorted(n for n, r in reports.items() if r.aof is False and r.rdb_save == "")
    unknown = sorted(n for n, r in reports.items() if r.aof is False and r.rdb_save is None)
    if off:
        log.warning(
            "Redis Cluster nodes %s have persistence off (no AOF, no RDB save points): a "
            "node that restarts without a replica to take over loses its jobs. Enable "
            "`appendonly yes` for durable queues.",
            ", ".join(off),
        )
    if unknown:
        log.warning("could not check whether Redis Cluster nodes %s persist their data", unknown)
