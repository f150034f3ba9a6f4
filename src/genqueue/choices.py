"""Enum values given as plain strings, with an error that lists the valid ones.

Public filters and options take an enum member or its string value (``"auth"`` as well
as ``ErrorKind.AUTH``). Anything else is ``InvalidInput`` naming the field and listing
the choices, so a typo fails at once and says what would have worked.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import TypeVar

from genqueue.errors import InvalidInput

E = TypeVar("E", bound=Enum)


def parse_choice(enum: type[E], value: E | str, field: str, what: str = "values") -> E:
    """``value`` as a member of ``enum``; raises ``InvalidInput`` listing the valid ``what``."""
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except (ValueError, TypeError):
        valid = ", ".join(str(member.value) for member in enum)
        raise InvalidInput(
            f"invalid {field} {value!r}; valid {what}: {valid}", field=field
        ) from None


def parse_choices(
    enum: type[E], values: Iterable[E | str], field: str, what: str = "values"
) -> frozenset[E]:
    """Every item of ``values`` as a member of ``enum`` (see ``parse_choice``)."""
    return frozenset(parse_choice(enum, value, field, what) for value in values)
