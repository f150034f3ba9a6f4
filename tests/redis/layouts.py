"""Dead jobs as earlier key layouts stored them, made from what this one stores."""

from __future__ import annotations

from typing import Any

import redis


def whole(raw: bytes | None) -> tuple[list[str], bytes, bytes]:
    """A dead job kept whole (layout 2): its head's fields, its entry and its body."""
    assert raw is not None and not raw.startswith(b"{")
    head, entry, body = raw.split(b"\n", 2)
    return head.decode().split("|", 5), entry, body


def as_layout_1(client: redis.Redis, keys: Any, ids: list[str]) -> None:
    """Store dead jobs kept whole as layout 1 did: the entry alone in its field, the body
    and the hot record in their own hashes."""
    for job_id in ids:
        (attempts, lease, updated, seq, ck, owner), entry, body = whole(
            client.hget(keys["dlq"], job_id)
        )
        seqm = seq + job_id if seq else ""
        hot = "|".join(["dead", attempts, lease, "", updated, seqm, ck + job_id, owner])
        client.hset(keys["body"], job_id, body)
        client.hset(keys["hot"], job_id, hot)
        client.hset(keys["dlq"], job_id, entry)
