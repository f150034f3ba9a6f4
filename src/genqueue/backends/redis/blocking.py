"""Enqueue from a synchronous caller's own thread (``BlockingClient``), without the hop to
the client's event loop thread (about 200 us of an enqueue of ~600 us there).

It sends the very script call ``RedisBackend.enqueue`` sends (same keys, same encoded
jobs) once, with redis-py's blocking client, on a pool of its own. It is used only where
that call is all there is to do: one server (not a cluster), no replica waits. A failure
that may be transient (a connection lost, a timeout) is not retried here: the caller hands
the same jobs to the asynchronous ``enqueue``, which retries across outages; if the first
send had run, the script finds the same bodies stored and counts them as stored, so no
job is stored twice. A definitive refusal (a duplicate id, an idempotency conflict, Redis
out of memory) raises the same error as the asynchronous path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

import redis
from genqueue.backends.redis import scripts
from genqueue.backends.redis.connection import pool_options, response_error, waiting_may_cure
from genqueue.backends.redis.keys import QueueKeys
from genqueue.backends.redis.options import RedisOptions
from genqueue.backends.remote import ServerClock


class BlockingEnqueue:
    """The enqueue script, sent from the calling thread; thread-safe."""

    def __init__(self, options: RedisOptions, clock: ServerClock) -> None:
        self.options = options
        self.clock = clock
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _redis(self) -> redis.Redis | None:
        with self._lock:
            if self._closed:
                return None  # the backend closed meanwhile: the asynchronous path says so
            if self._client is None:
                # No retries: a failure goes to the retrying (asynchronous) path.
                pool = redis.BlockingConnectionPool.from_url(
                    self.options.url, **pool_options(self.options), retry=Retry(NoBackoff(), 0)
                )
                self._client = redis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
            return self._client

    def send(
        self, keys: QueueKeys, clock: str, jobs: Sequence[Sequence[Any]]
    ) -> scripts.EnqueueReply | None:
        """The enqueue script's reply, or None if the call failed in a way that waiting
        may cure (the caller then sends it again through the asynchronous path)."""
        script = scripts.SCRIPTS["enqueue"]
        args = scripts.enqueue_args(clock, jobs)
        client = self._redis()
        if client is None:
            return None
        sent = time.monotonic()
        try:
            try:
                reply = client.evalsha(script.sha, len(keys.names), *keys.names, *args)
            except rex.NoScriptError:
                client.script_load(script.text)
                reply = client.evalsha(script.sha, len(keys.names), *keys.names, *args)
        except Exception as exc:
            if waiting_may_cure(exc):
                return None
            if isinstance(exc, rex.ResponseError):
                raise response_error("enqueue", exc) from exc
            raise
        self.clock.observe(float(reply[0]), sent, time.monotonic())
        return scripts.enqueue_reply(reply)

    def close(self) -> None:
        with self._lock:
            client, self._client, self._closed = self._client, None, True
        if client is not None:
            client.close()
            client.connection_pool.disconnect()
