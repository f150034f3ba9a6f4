"""The state machine: every move is checked against TRANSITIONS."""

from __future__ import annotations

import pytest

from genqueue import IllegalTransition, Job, JobState
from genqueue.backends.base import Move
from genqueue.job import TERMINAL_STATES, TRANSITIONS


def job(state: JobState) -> Job:
    return Job(id="a" * 32, task="t", created_at=0.0, run_at=0.0, state=state)


@pytest.mark.parametrize("source", list(JobState))
@pytest.mark.parametrize("target", list(JobState))
def test_moves_follow_the_table(source: JobState, target: JobState) -> None:
    if target in TRANSITIONS[source]:
        Move(job(target), source, 1)
    else:
        with pytest.raises(
            IllegalTransition, match=f"is {source.value}; it cannot become {target.value}"
        ):
            Move(job(target), source, 1)


def test_terminal_states_only_leave_by_redrive() -> None:
    assert TRANSITIONS[JobState.COMPLETED] == TRANSITIONS[JobState.CANCELLED] == frozenset()
    assert TRANSITIONS[JobState.DEAD] == {JobState.QUEUED}
    assert {JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED} == TERMINAL_STATES
