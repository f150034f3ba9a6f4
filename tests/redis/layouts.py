"""Dead jobs as key layout 1 stored them, made from what layout 2 stores."""

from __future__ import annotations

from typing import Any

import orjson

import redis
from genqueue import App
from genqueue.backends.redis import RedisBackend
from genqueue.backends.redis.keys import dlq_tail, time_key, value_prefix


def whole(raw: bytes | None) -> tuple[list[str], bytes, bytes]:
    """A dead job kept whole (layout 2): its head's fields, its entry and its body."""
    assert raw is not None and not raw.startswith(b"{")
    head, entry, body = raw.split(b"\n", 2)
    return head.decode().split("|", 5), entry, body


def as_layout_1(client: redis.Redis, keys: Any, ids: list[str]) -> None:
    """Store dead jobs kept whole as layout 1 did: the entry alone in its field, the body
    and the hot record in their own hashes, and index members ending with the hex digits
    of ``time_key(failed_at) + id``. With ``<prefix>:layout`` set to 1 as well, the next
    process that opens the Redis migrates it."""
    for job_id in ids:
        (attempts, lease, updated, seq, ck, owner), entry, body = whole(
            client.hget(keys["dlq"], job_id)
        )
        record = orjson.loads(entry)
        seqm = "0" * (16 - len(seq)) + seq + job_id if seq else ""
        hot = "|".join(
            ["dead", attempts, lease, "", updated or record["a"], seqm, ck + job_id, owner]
        )
        client.hset(keys["body"], job_id, body)
        client.hset(keys["hot"], job_id, hot)
        client.hset(keys["dlq"], job_id, entry)
        if record.get("v") != 2:
            continue  # an entry stored before version 2 names its (hex) members itself
        failed_at = float(record["a"])
        for index, value in (
            ("dlq:user", record["u"]),
            ("dlq:kind", record["k"]),
            ("dlq:task", record["t"]),
            ("dlq:fp", record["f"]),
        ):
            if value is None:
                continue
            assert client.zrem(keys[index], value_prefix(value) + dlq_tail(failed_at, job_id)) == 1
            client.zadd(keys[index], {value_prefix(value) + time_key(failed_at) + job_id: 0})


def to_layout_1(app: App, ids: list[str], queue: str = "dlqtest") -> tuple[redis.Redis, Any]:
    """``as_layout_1`` on ``app``'s Redis, with its layout set to 1: the next process that
    opens it migrates it. Returns a client (close it) and the queue's keys."""
    backend = app.backend
    assert isinstance(backend, RedisBackend)
    client = redis.Redis.from_url(backend.url.split("?")[0])
    keys = backend.keys.queue(queue)
    as_layout_1(client, keys, ids)
    client.set(backend.keys.layout_key, "1")
    return client, keys
