"""The conformance suite runs on every backend, PostgreSQL included."""

from __future__ import annotations

import pytest

from tests.conftest import CONFORMANCE_BACKENDS


@pytest.fixture(params=CONFORMANCE_BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
