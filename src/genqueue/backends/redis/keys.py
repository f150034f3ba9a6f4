"""The whole Redis key schema of genqueue, and the sortable strings stored in its indexes.

Every key of a queue starts with the hash tag ``{<prefix>:<queue>}``, so all of a
queue's keys live in one Cluster slot and each Lua script (which only ever touches one
queue) can run on Redis Cluster. Scripts receive every key through ``KEYS`` in the order
of ``QUEUE_KEYS``; nothing builds a key name inside Lua. Outside any queue live the
registry of queue names (``<prefix>:queues``, written and read from Python only), the
version of this layout (``<prefix>:layout``, see layout.py) and the
shared state records and slot sets (``<prefix>:state:<key>``, ``<prefix>:slots:<key>``),
each touched alone by its scripts.

Per queue (``T`` is the tag)::

    T:body      HASH  id -> job record (compact JSON, without what the field, the key
                      and the hot record say), rewritten whole by enqueue and move; a
                      dead job's is in its entry (T:dlq)
    T:hot       HASH  id -> "state|attempts|lease|started|updated|seqm|cm|owner", the
                      fields fetch/heartbeat/promote change without rewriting the body
                      (a finished job's has no seqm and no started: its body has it;
                      a dead job has none: its entry holds what is left of it)
    T:prog      HASH  id -> progress (JSON) of a running job
    T:patch     HASH  id -> running updates (JSON lines: remote id, meta, cost)
    T:ready     ZSET  seqm -> run_at       queued jobs; seqm = 16-hex enqueue seq + id,
                                           so equal due times keep enqueue order
    T:delayed   ZSET  id -> run_at         scheduled and retrying jobs
    T:leases    ZSET  id -> lease expiry   active jobs
    T:finished  ZSET  id -> expires_at     completed and cancelled jobs (retention); a
                                           member whose hot record has a seqm was stored
                                           before expiries: its score is its finished_at
    T:idem      HASH  idempotency key -> "<id>:<data digest>" of the pending job holding it
    T:seq       STRING enqueue counter
    T:jobs:<s>  ZSET  (lex) cm = time_key(created_at) + id, one per state: listing
                      newest first with exact cursors, and counts (ZCARD)
    T:dlq       HASH  id -> dead letter entry (JSON: user, task, kind, fingerprint, reason,
                      failed_at and its time_key, expiry, the stack keys of its job, cost);
                      since layout 2 the dead job is kept whole in it, with no body or
                      hot record of its own: "<attempts>|<lease>|<updated>|<seq>|<ck>|
                      <owner>" NL entry NL compact body (see lua/lib/prelude.lua); entries
                      stored before are the JSON alone ('{' first), their jobs in body/hot
    T:dlq:kind|user|task|fp  ZSET (lex) value_prefix(value) + dlq_tail(failed_at, id)
                      (layout 1 stored time_key(failed_at) + id as the tail: migrate.py);
                      ``dlq:kind`` is also the time index (every entry has a kind): the
                      whole DLQ newest first is a merge of its kinds' ranges
    T:dlq:expires ZSET id -> expires_at, no longer written: expiry walks each kind's
                      range of ``dlq:kind`` oldest first (see lua/dlq_expire.lua); entries
                      stored before are taken out of it when dropped
    T:dlq:cost  HASH  unit -> cost lost in the queue's entries (for stats)
    T:dlq:counts HASH counters kept with every entry added or dropped (for stats): ``n``
                      entries, ``k:<kind>``, ``t:<task>``, ``u:<user>`` (``u`` without
                      a user), ``f:<fingerprint>``, ``ft:<value_prefix(fp)><task>``,
                      ``d:<UTC day number>``; ``exact`` is set once they count every entry
                      (entries stored before counters existed are counted by
                      ``dlq_upgrade.lua``, which stats runs once)
    T:dlq:stacks HASH ``s:<key>`` -> a stack trace, ``r:<key>`` -> how many entries refer
                      to it: the dead jobs' stacks, each kept once (see backends/deadbody)
    T:dlq:all, T:dlq:fptask  ZSET (lex), no longer written: entries stored before the
                      counters existed are still in them until dropped or upgraded

A dead job's body is stored compact (``deadbody.pack``: its stacks by key, the rest
compressed); Lua never parses a body, and readers accept plain JSON bodies as well.

Lex indexes hold every member at score 0 and sort by bytes: ``time_key`` maps a float to
16 hex digits that sort like the number, ``dlq_tail`` spells ``time_key + id`` (48 hex
digits) in 32 characters that sort the same way (16 bytes less in each of a dead letter's
four index members), and ``value_prefix`` makes each value's range contiguous and
unambiguous, whatever bytes the value holds.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from genqueue.errors import ConfigError

STATES = ("queued", "scheduled", "active", "retrying", "completed", "dead", "cancelled")

#: The order in which every queue script receives its keys (see lua/lib/prelude.lua).
QUEUE_KEYS = (
    "body",
    "hot",
    "prog",
    "patch",
    "ready",
    "delayed",
    "leases",
    "finished",
    "idem",
    "seq",
    "dlq",
    "dlq:all",
    "dlq:user",
    "dlq:kind",
    "dlq:task",
    "dlq:fp",
    "dlq:expires",
    "dlq:cost",
    *(f"jobs:{state}" for state in STATES),
    "dlq:fptask",
    "dlq:counts",
    "dlq:stacks",
)

#: DLQ value indexes, in the order of an entry's members (after ``dlq:all``).
DLQ_VALUE_INDEXES = ("dlq:user", "dlq:kind", "dlq:task", "dlq:fp", "dlq:fptask")

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_SIGN = 1 << 63
_MASK = (1 << 64) - 1
ID_LENGTH = 32
TIME_KEY_LENGTH = 16


def check_prefix(prefix: str) -> str:
    if not _PREFIX_RE.match(prefix):
        raise ConfigError(
            f"invalid Redis key prefix {prefix!r}: use 1-64 letters, digits, '_', '.', ':' or '-'"
        )
    return prefix


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one queue, all under its hash tag."""

    tag: str
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(f"{self.tag}:{name}" for name in QUEUE_KEYS))

    def __getitem__(self, name: str) -> str:
        return f"{self.tag}:{name}"

    def jobs(self, state: str) -> str:
        return f"{self.tag}:jobs:{state}"


class KeySchema:
    """Key names for one prefix; cheap to call on hot paths (queue keys are cached)."""

    def __init__(self, prefix: str = "genqueue") -> None:
        self.prefix = check_prefix(prefix)
        self.queues_key = f"{prefix}:queues"
        #: STRING: the key layout's version (layout.py).
        self.layout_key = f"{prefix}:layout"
        #: STRING: held while a process migrates the layout (layout.py).
        self.migration_key = f"{prefix}:migrating"
        self._queues: dict[str, QueueKeys] = {}

    def state(self, key: str) -> str:
        """A shared state record (cooldowns, breakers): HASH v (JSON), n (version), x."""
        return f"{self.prefix}:state:{key}"

    def tally(self, bucket: int) -> str:
        """The analytics counters of one minute: HASH name -> count (expires). All tally
        keys share one hash tag, so a flush is one script on Cluster too."""
        return "{" + f"{self.prefix}:tally" + "}:" + str(bucket)

    @property
    def tally_index(self) -> str:
        """ZSET bucket -> bucket: which minutes have tallies (reads never guess)."""
        return "{" + f"{self.prefix}:tally" + "}:index"

    def slots(self, key: str) -> str:
        """A set of concurrency slots: ZSET holder -> expiry."""
        return f"{self.prefix}:slots:{key}"

    def queue(self, name: str) -> QueueKeys:
        keys = self._queues.get(name)
        if keys is None:
            keys = self._queues[name] = QueueKeys("{" + f"{self.prefix}:{name}" + "}")
        return keys


# -- sortable members -----------------------------------------------------------------------


def time_key(value: float) -> str:
    """16 hex digits that sort (as bytes) exactly like the float does."""
    bits = struct.unpack(">Q", struct.pack(">d", float(value)))[0]
    bits = (~bits & _MASK) if bits & _SIGN else bits | _SIGN
    return f"{bits:016x}"


def time_from_key(key: str) -> float:
    """The float a ``time_key`` was made from."""
    bits = int(key, 16)
    bits = bits & ~_SIGN if bits & _SIGN else ~bits & _MASK
    return float(struct.unpack(">d", struct.pack(">Q", bits))[0])


def value_prefix(value: str) -> str:
    """A value as a member prefix: its byte length (4 digits), then the value."""
    return f"{len(value.encode()):04d}{value}"


def split_prefixes(group: str) -> list[str]:
    """The values of a member prefix made of ``value_prefix`` parts."""
    values = []
    raw = group.encode()
    while raw:
        size = int(raw[:4])
        values.append(raw[4 : 4 + size].decode())
        raw = raw[4 + size :]
    return values


#: The characters of a DLQ member's tail, in byte order: 6 bits each, so a tail sorts
#: like the number it spells. Above all of them, ``TAIL_END`` closes a prefix's range.
#: A tail is base64 of the 24 bytes with this alphabet instead of the standard one (whose
#: characters are not in byte order), so C code encodes and decodes it.
_TAIL_CHARS = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_STANDARD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_TO_TAIL = bytes.maketrans(_STANDARD, _TAIL_CHARS)
_FROM_TAIL = bytes.maketrans(_TAIL_CHARS, _STANDARD)
TAIL_END = "{"
TAIL_LENGTH = 32


def dlq_tail(failed_at: float, job_id: str) -> str:
    """The tail of a DLQ index member: ``time_key(failed_at) + id`` (48 hex digits) in 32
    characters that sort the same way (lua/lib/prelude.lua makes the same)."""
    return tail_of_hex(time_key(failed_at) + job_id)


def tail_of_hex(digits: str) -> str:
    return base64.b64encode(bytes.fromhex(digits)).translate(_TO_TAIL).decode()


def dlq_member_id(member: bytes | str) -> str:
    """The job id at the end of a DLQ index member."""
    raw = member.encode() if isinstance(member, str) else member
    return base64.b64decode(raw[-TAIL_LENGTH:].translate(_FROM_TAIL))[8:].hex()


def created_member(created_at: float, job_id: str) -> str:
    return time_key(created_at) + job_id


def member_id(member: bytes | str) -> str:
    """The job id at the end of any lex member."""
    text = member.decode() if isinstance(member, bytes) else member
    return text[-ID_LENGTH:]


def lex_range(
    prefix: str,
    since: float | None = None,
    until: float | None = None,
    before: tuple[float, str] | None = None,
    *,
    spell: Callable[[str], str] = str,
) -> tuple[str, str]:
    """(max, min) bounds for ZREVRANGEBYLEX over members ``prefix + tail``, where the
    tail is ``time_key + id`` as ``spell`` writes those 48 hex digits (as they are in the
    job indexes; ``tail_of_hex`` in the DLQ's).

    ``since`` is inclusive, ``until`` exclusive, ``before`` a cursor (exclusive).
    """
    zero = "0" * ID_LENGTH
    low = "[" + prefix if prefix else "-"
    if since is not None:
        low = "[" + prefix + spell(time_key(since) + zero)
    uppers = []
    if until is not None:
        uppers.append(prefix + spell(time_key(until) + zero))
    if before is not None:
        uppers.append(prefix + spell(time_key(before[0]) + before[1]))
    if uppers:
        return "(" + min(uppers), low
    # TAIL_END is above hex digits and tail characters: above every member of the prefix.
    return ("(" + prefix + TAIL_END if prefix else "+"), low
