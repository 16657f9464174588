"""Fuzz the HTTP API from its own OpenAPI schema: no input may cause a 5xx response."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.test_api import Server, start_server, stop_server  # noqa: E402

pytestmark = pytest.mark.integration
STATE: dict[str, Server] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[Any]:
    server = start_server(tmp_path_factory.mktemp("fuzz") / "data", FACELEDGER_RATE_LIMIT="0")
    STATE["server"] = server
    with server.client() as admin:  # something to find, so routes go past their 404s
        admin.create_collection("c", require_consent=False)
        admin.create_person("c", "p")
        admin.enroll("c", "p", faces_dir / "faceapi_bbt" / "identities" / "amy" / "amy1.png")
    yield schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    stop_server(server)


def test_no_server_errors(api_schema: Any) -> None:
    server = STATE["server"]
    failures: list[str] = []
    calls: list[int] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def run(case: Any) -> None:
            response = case.call(
                base_url=server.url, headers={"X-API-Key": server.admin_key}, timeout=60
            )
            calls.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.text[:200]}")

        run()
    assert failures == []
    assert len(calls) >= 10 * len(operations)  # every operation was really exercised
