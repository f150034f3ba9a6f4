"""Job ids for people: tables show a short prefix, and commands take any unique prefix.

A job id is 32 random hex characters, too wide for an 80-column table. Tables show the
first ``SHOWN`` characters (more when two shown ids share them), and every command that
takes an id also takes a prefix of at least ``MIN_PREFIX`` characters, as git does. A
prefix is looked up in the backend (``Backend.job_ids_with_prefix``); one that matches
several jobs is refused with the number of candidates. ``--json`` keeps full ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from genqueue.errors import DeadLetterNotFound, InvalidInput, JobNotFound

if TYPE_CHECKING:
    from genqueue.app import App

#: Characters of an id shown in tables (48 random bits: unique in practice).
SHOWN = 12
#: Shortest prefix a command accepts.
MIN_PREFIX = 4
#: Candidates looked up for a prefix; one more than shown in an "ambiguous" error.
CANDIDATES = 20
ID_LENGTH = 32
_HEX = re.compile(r"^[0-9a-f]+$")


def short_ids(ids: Iterable[str]) -> dict[str, str]:
    """Each id -> the prefix a table shows: one length for all, unique among them."""
    unique = list(dict.fromkeys(ids))
    length = SHOWN
    while length < ID_LENGTH and len({i[:length] for i in unique}) < len(unique):
        length += 2
    return {i: i[:length] for i in unique}


def _prefix(text: str) -> str:
    """``text`` as a lowercase hex prefix (a whole id is a prefix too); else a clear error."""
    prefix = text.strip().lower()
    if len(prefix) == 36 and prefix.count("-") == 4:
        prefix = prefix.replace("-", "")  # a dashed UUID
    if not _HEX.match(prefix) or len(prefix) > ID_LENGTH:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise InvalidInput(
            f"invalid job id {shown!r}: use the 32 hexadecimal characters of an id, or a "
            f"unique prefix of at least {MIN_PREFIX} of them",
            field="id",
        )
    if len(prefix) < MIN_PREFIX:
        raise InvalidInput(
            f"job id prefix {prefix!r} is too short: give at least {MIN_PREFIX} characters",
            field="id",
        )
    return prefix


async def _matches(app: App, prefix: str, dead_letter: bool) -> list[str]:
    if len(prefix) == ID_LENGTH:
        return [prefix]
    found = await app.backend.job_ids_with_prefix(prefix, CANDIDATES)
    if dead_letter and len(found) > 1:
        # Only dead jobs have entries: a live job sharing the prefix is no ambiguity.
        found = [i for i in found if await app.backend.dlq_get(i) is not None]
    return found


def _ambiguous(prefix: str, found: Sequence[str]) -> InvalidInput:
    count = f"{len(found)}+" if len(found) >= CANDIDATES else str(len(found))
    return InvalidInput(
        f"job id prefix {prefix!r} is ambiguous: it matches {count} jobs; give more characters",
        field="id",
    )


async def resolve(app: App, text: str, *, dead_letter: bool = False) -> str:
    """The full id that ``text`` (an id or a unique prefix) names; NotFound if none."""
    prefix = _prefix(text)
    found = await _matches(app, prefix, dead_letter)
    if len(found) > 1:
        raise _ambiguous(prefix, found)
    if not found:
        raise DeadLetterNotFound(prefix) if dead_letter else JobNotFound(prefix)
    return found[0]


async def resolve_many(
    app: App, texts: Sequence[str], *, dead_letter: bool = False
) -> tuple[list[str], list[str]]:
    """(full ids, the texts that matched nothing) for ids or prefixes given together.

    A whole id passes through even if unknown (the operation reports it, as it does for
    ids from scripts); a prefix that matches nothing is returned as missing. An invalid
    or ambiguous one refuses the whole command before anything is changed.
    """
    resolved: list[str] = []
    missing: list[str] = []
    for text in texts:
        prefix = _prefix(text)
        found = await _matches(app, prefix, dead_letter)
        if len(found) > 1:
            raise _ambiguous(prefix, found)
        if found:
            resolved.append(found[0])
        else:
            missing.append(text)
    return list(dict.fromkeys(resolved)), missing
