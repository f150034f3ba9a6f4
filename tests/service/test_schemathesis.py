"""Property tests of the API against its own OpenAPI schema (schemathesis): generated
requests, valid and invalid, never get a 5xx or an answer the schema does not describe."""

from __future__ import annotations

import atexit
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from genqueue.service.app import create_app
from tests.service.conftest import ADMIN, make_app, service_settings

# The schema is loaded when the module is collected, so the app is built then, on a
# SQLite file of its own (removed at exit).
_DIR = tempfile.TemporaryDirectory(prefix="genqueue-schemathesis-")
atexit.register(_DIR.cleanup)
_APP = create_app(make_app(f"sqlite:///{Path(_DIR.name) / 'schema.db'}"), service_settings())
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", _APP)


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {ADMIN}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
