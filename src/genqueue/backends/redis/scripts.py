"""The Lua scripts of the Redis backend and one typed Python wrapper for each.

Each ``lua/<operation>.lua`` is one operation on one queue; ``lua/lib/prelude.lua`` (key
names, clock, shared helpers) is prepended to each when it is loaded. A wrapper turns
typed arguments into ``KEYS``/``ARGV`` and the raw reply into typed values; it runs the
script through an ``Evaluator`` (the backend's, which handles NOSCRIPT, timeouts and
reconnects; on Redis Cluster it runs the ``CLUSTER_SCRIPTS`` twin of the script it
is given). ``WRAPPERS`` maps every script name to its wrapper; a test checks that each
``.lua`` file has exactly one.

Every reply starts with the time the script used (see the prelude), returned here as
``now`` so the backend can keep its estimate of the server clock current.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple, Protocol, TypeVar

import orjson

from genqueue.backends.redis.keys import QUEUE_KEYS, QueueKeys

PACKAGE = "genqueue.backends.redis"
_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True)
class Script:
    name: str
    text: str
    sha: str


def _read(path: str) -> str:
    return (resources.files(PACKAGE) / "lua" / path).read_text(encoding="utf-8")


def script_names() -> list[str]:
    folder = resources.files(PACKAGE) / "lua"
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".lua"))


_WAKE = "local WAKE = 'PUBLISH'\n"


def load_scripts(wake: str = "PUBLISH") -> dict[str, Script]:
    """Every script, with the prelude; ``wake`` is the command that wakes workers."""
    prelude = _read("lib/prelude.lua")
    if _WAKE not in prelude:
        raise RuntimeError("lua/lib/prelude.lua no longer defines WAKE")
    prelude = prelude.replace(_WAKE, f"local WAKE = '{wake}'\n")
    out = {}
    for name in script_names():
        text = prelude + "\n" + _read(f"{name}.lua")
        out[name] = Script(name, text, hashlib.sha1(text.encode()).hexdigest())  # noqa: S324 - Redis names scripts by SHA1
    return out


SCRIPTS = load_scripts()
#: The same scripts for Redis Cluster: wake-ups use sharded pub/sub (see wake.py).
CLUSTER_SCRIPTS = load_scripts("SPUBLISH")
#: Scripts that never write; no WAIT follows them (see Connection.evaluate).
READ_ONLY = frozenset({"read_jobs", "dlq_scan", "state_get", "slot_count", "slot_holders"})
#: No WAIT follows these either: read-only, or analytics counts a failover may lose.
UNWAITED = READ_ONLY | {"tally_add"}


#: Scripts told, by "1" in this argument, that the call is being sent again after a
#: failure that may have come after it ran (a lost reply): see ``lua/move.lua``.
RESENT_ARG = {"move": 2}


def resent(script: Script, args: Sequence[Any]) -> Sequence[Any]:
    """``args`` of a call sent again (unchanged for scripts that do not care)."""
    index = RESENT_ARG.get(script.name)
    if index is None:
        return args
    out = list(args)
    out[index] = "1"
    return out


class Evaluator(Protocol):
    async def __call__(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any: ...


WRAPPERS: dict[str, Callable[..., Awaitable[Any]]] = {}


def _wrapper(fn: _F) -> _F:
    WRAPPERS[fn.__name__] = fn
    return fn


def _now(reply: Sequence[Any]) -> float:
    return float(reply[0])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- replies --------------------------------------------------------------------------------


class Stored(NamedTuple):
    """The stored parts of one job (and its dead letter entry, if any)."""

    body: bytes
    hot: bytes
    prog: bytes | None
    patch: bytes | None
    entry: bytes | None = None
    #: The stacks its dead job's compact body refers to, by key (``deadbody``).
    stacks: dict[str, str] | None = None


class EnqueueReply(NamedTuple):
    now: float
    #: Per job: None if stored, else the pending job that holds its idempotency key.
    holders: list[Stored | None]


class FetchReply(NamedTuple):
    now: float
    #: (id, body, attempts) of each claimed job, in claim order.
    claimed: list[tuple[str, bytes, int]]
    #: When the queue's next job is due (inf: none; see fetch.lua), if asked for.
    next_due: float | None = None
    #: How many jobs are left in the queue's ready set, if asked for.
    left: int | None = None


class IdsReply(NamedTuple):
    now: float
    ids: list[str]


class FlagsReply(NamedTuple):
    now: float
    flags: list[bool]


class CountReply(NamedTuple):
    now: float
    n: int


class PurgeReply(NamedTuple):
    now: float
    #: Jobs deleted.
    n: int
    #: Jobs looked at: deleted, or (stored before expiries were) given their expiry.
    examined: int


class UpgradeReply(NamedTuple):
    now: float
    #: Where the pass goes on ('0' when it is done).
    cursor: str
    rewritten: int


class ReadReply(NamedTuple):
    now: float
    jobs: list[Stored | None]


class ScanReply(NamedTuple):
    now: float
    #: The last index member examined (None when there was none): where a next call
    #: goes on.
    last: bytes | None
    exhausted: bool
    #: The members whose entries matched, newest first.
    members: list[bytes]


# -- wrappers -------------------------------------------------------------------------------


@_wrapper
async def enqueue(
    run: Evaluator, keys: QueueKeys, clock: str, jobs: Sequence[Sequence[Any]]
) -> EnqueueReply:
    """``jobs``: (id, state, run_at, idempotency key, body, cm, updated_at, attempts,
    data digest)."""
    return enqueue_reply(await run(SCRIPTS["enqueue"], keys.names, enqueue_args(clock, jobs)))


def enqueue_args(clock: str, jobs: Sequence[Sequence[Any]]) -> list[Any]:
    args: list[Any] = [clock]
    for job in jobs:
        args.extend(job)
    return args


def enqueue_reply(reply: Any) -> EnqueueReply:
    holders = [Stored(*item) if item else None for item in reply[1:]]
    return EnqueueReply(_now(reply), holders)


@_wrapper
async def fetch(
    run: Evaluator,
    keys: QueueKeys,
    clock: str,
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    promote_limit: int,
    want_next: bool = False,
) -> FetchReply:
    call = fetch_call(
        keys,
        clock,
        worker_id=worker_id,
        limit=limit,
        lease_seconds=lease_seconds,
        promote_limit=promote_limit,
        want_next=want_next,
    )
    return fetch_reply(await run(*call))


Call = tuple[Script, Sequence[str], Sequence[Any]]


def fetch_call(
    keys: QueueKeys,
    clock: str,
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    promote_limit: int,
    want_next: bool,
) -> Call:
    """``fetch``'s script call, to run with others (``Connection.evaluate_many``)."""
    args = [clock, worker_id, limit, lease_seconds, promote_limit, "1" if want_next else ""]
    return SCRIPTS["fetch"], keys.names, args


def fetch_reply(reply: Sequence[Any]) -> FetchReply:
    claimed = [(_text(reply[i]), reply[i + 1], int(reply[i + 2])) for i in range(3, len(reply), 3)]
    if reply[1] in (b"", ""):
        return FetchReply(_now(reply), claimed)
    return FetchReply(_now(reply), claimed, float(reply[1]), int(reply[2]))


@_wrapper
async def heartbeat(
    run: Evaluator,
    keys: QueueKeys,
    clock: str,
    lease_seconds: float,
    leases: Sequence[tuple[str, int]],
) -> IdsReply:
    args: list[Any] = [clock, lease_seconds]
    for job_id, token in leases:
        args += [job_id, token]
    reply = await run(SCRIPTS["heartbeat"], keys.names, args)
    return IdsReply(_now(reply), [_text(x) for x in reply[1:]])


@_wrapper
async def update_running(
    run: Evaluator,
    keys: QueueKeys,
    clock: str,
    *,
    job_id: str,
    token: int,
    progress: bytes | str,
    patch: bytes | str,
) -> FlagsReply:
    reply = await run(
        SCRIPTS["update_running"], keys.names, [clock, job_id, token, progress, patch]
    )
    return FlagsReply(_now(reply), [bool(reply[1])])


@_wrapper
async def move(
    run: Evaluator, keys: QueueKeys, clock: str, moves: Sequence[Sequence[Any]]
) -> FlagsReply:
    """``moves``: the 17 values per move listed in ``lua/move.lua``."""
    return move_reply(await run(*move_call(keys, clock, moves)))


def move_call(keys: QueueKeys, clock: str, moves: Sequence[Sequence[Any]]) -> Call:
    """``move``'s script call, to run with others (``Connection.evaluate_many``). A body
    given as bytes (a compact dead body, not text) goes as an argument of its own,
    binary-safe, and the move names it ``@<ARGV index>``."""
    rows: list[Sequence[Any]] = []
    bodies: list[bytes] = []
    for move in moves:
        if isinstance(move[13], bytes):
            bodies.append(move[13])
            rows.append((*move[:13], f"@{3 + len(bodies)}", *move[14:]))
        else:
            rows.append(move)
    return SCRIPTS["move"], keys.names, [clock, orjson.dumps(rows), "", *bodies]


def move_reply(reply: Sequence[Any]) -> FlagsReply:
    return FlagsReply(_now(reply), [bool(x) for x in reply[1:]])


@_wrapper
async def promote(run: Evaluator, keys: QueueKeys, clock: str, limit: int) -> CountReply:
    reply = await run(SCRIPTS["promote"], keys.names, [clock, limit])
    return CountReply(_now(reply), int(reply[1]))


@_wrapper
async def purge_finished(
    run: Evaluator,
    keys: QueueKeys,
    clock: str,
    now: float,
    *,
    finished_before: float,
    limit: int,
    keep: int | None = None,
) -> PurgeReply:
    args = [clock, now, limit, "" if keep is None else keep, finished_before]
    reply = await run(SCRIPTS["purge_finished"], keys.names, args)
    return PurgeReply(_now(reply), int(reply[1]), int(reply[2]))


@_wrapper
async def dlq_delete(
    run: Evaluator, keys: QueueKeys, clock: str, job_ids: Sequence[str]
) -> IdsReply:
    reply = await run(SCRIPTS["dlq_delete"], keys.names, [clock, *job_ids])
    return IdsReply(_now(reply), [_text(x) for x in reply[1:]])


@_wrapper
async def dlq_expire(run: Evaluator, keys: QueueKeys, clock: str, limit: int) -> IdsReply:
    reply = await run(SCRIPTS["dlq_expire"], keys.names, [clock, limit])
    return IdsReply(_now(reply), [_text(x) for x in reply[1:]])


@_wrapper
async def read_jobs(
    run: Evaluator, keys: QueueKeys, clock: str, job_ids: Sequence[str]
) -> ReadReply:
    return read_reply(await run(*read_call(keys, clock, job_ids)), len(job_ids))


def read_call(keys: QueueKeys, clock: str, job_ids: Sequence[str]) -> Call:
    """``read_jobs``'s script call, to run with others (``Connection.evaluate_many``)."""
    return SCRIPTS["read_jobs"], keys.names, [clock, *job_ids]


def read_reply(reply: Sequence[Any], count: int) -> ReadReply:
    end = 1 + 5 * count
    stacks = {
        _text(reply[i]): _text(reply[i + 1])
        for i in range(end, len(reply), 2)
        if reply[i + 1] is not None
    }
    jobs: list[Stored | None] = []
    for i in range(1, end, 5):
        body, hot, prog, patch, entry = reply[i : i + 5]
        found = Stored(body, hot, prog, patch, entry, stacks) if body is not None else None
        jobs.append(found)
    return ReadReply(_now(reply), jobs)


@_wrapper
async def dlq_scan(run: Evaluator, call: Call) -> ScanReply:
    """Run a ``scan_call`` (listings send several at once with ``evaluate_many``)."""
    return scan_reply(await run(*call))


def scan_call(
    keys: QueueKeys,
    clock: str,
    index: str,
    *,
    bounds: tuple[str, str],
    probes: Sequence[tuple[str, str]],
    want: int,
    budget: int,
) -> Call:
    """``dlq_scan``'s call: the members of ``index`` within ``bounds`` (high, low) whose
    entries are also in each probe's index under its value prefix ((index, prefix)
    pairs), at most ``want`` of them, ``budget`` members examined at most."""
    # KEYS are the queue's keys in QUEUE_KEYS order: indexes are sent as positions.
    tested = [x for name, prefix in probes for x in (QUEUE_KEYS.index(name) + 1, prefix)]
    position = QUEUE_KEYS.index(index) + 1
    return SCRIPTS["dlq_scan"], keys.names, [clock, position, *bounds, want, budget, *tested]


def scan_reply(reply: Sequence[Any]) -> ScanReply:
    last = reply[1] or None
    return ScanReply(_now(reply), last, _text(reply[2]) == "1", list(reply[3:]))


@_wrapper
async def dlq_upgrade(
    run: Evaluator, keys: QueueKeys, clock: str, *, cursor: str, count: int
) -> UpgradeReply:
    reply = await run(SCRIPTS["dlq_upgrade"], keys.names, [clock, cursor, count])
    return UpgradeReply(_now(reply), _text(reply[1]), int(reply[2]))


class RetailReply(NamedTuple):
    now: float
    #: Where the next call goes on from ('' when the index is done).
    start: str
    rewritten: int


@_wrapper
async def dlq_retail(
    run: Evaluator, keys: QueueKeys, clock: str, *, index: str, start: str, count: int
) -> RetailReply:
    position = QUEUE_KEYS.index(index) + 1
    reply = await run(SCRIPTS["dlq_retail"], keys.names, [clock, position, start, count])
    return RetailReply(_now(reply), _text(reply[1]), int(reply[2]))


# -- shared state (one key each, outside any queue) ----------------------------------------


class StateReply(NamedTuple):
    now: float
    value: bytes | None
    version: int


@_wrapper
async def state_get(run: Evaluator, key: str, clock: str) -> StateReply:
    reply = await run(SCRIPTS["state_get"], [key], [clock])
    if len(reply) < 3:
        return StateReply(_now(reply), None, 0)
    return StateReply(_now(reply), reply[1], int(reply[2]))


@_wrapper
async def state_put(
    run: Evaluator, key: str, clock: str, *, value: bytes, expect_version: int, ttl: float | None
) -> CountReply:
    """``n`` is the new version, or 0 if the stored version was not the expected one."""
    ttl_arg = "" if ttl is None else ttl
    reply = await run(SCRIPTS["state_put"], [key], [clock, value, expect_version, ttl_arg])
    return CountReply(_now(reply), int(reply[1]))


@_wrapper
async def tally_add(
    run: Evaluator,
    keys: tuple[str, str],
    clock: str,
    *,
    bucket: int,
    ttl: int,
    oldest: int,
    counts: Mapping[str, float],
) -> float:
    """Add ``counts`` to the bucket's hash (kept ``ttl`` s) and index it; the index drops
    buckets older than ``oldest``. Returns the server's time."""
    args: list[Any] = [clock, bucket, ttl, oldest]
    for name, n in counts.items():
        args += [name, float(n)]
    return _now(await run(SCRIPTS["tally_add"], list(keys), args))


@_wrapper
async def slot_acquire(
    run: Evaluator, key: str, clock: str, *, holder: str, limit: int, ttl: float
) -> FlagsReply:
    reply = await run(SCRIPTS["slot_acquire"], [key], [clock, holder, limit, ttl])
    return FlagsReply(_now(reply), [bool(reply[1])])


@_wrapper
async def slot_release(run: Evaluator, key: str, clock: str, holder: str) -> FlagsReply:
    reply = await run(SCRIPTS["slot_release"], [key], [clock, holder])
    return FlagsReply(_now(reply), [bool(reply[1])])


@_wrapper
async def slot_count(run: Evaluator, key: str, clock: str) -> CountReply:
    reply = await run(SCRIPTS["slot_count"], [key], [clock])
    return CountReply(_now(reply), int(reply[1]))


@_wrapper
async def slot_holders(run: Evaluator, key: str, clock: str) -> IdsReply:
    reply = await run(SCRIPTS["slot_holders"], [key], [clock])
    return IdsReply(_now(reply), [_text(holder) for holder in reply[1:]])
