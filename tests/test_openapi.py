"""The HTTP contract as documented: a valid OpenAPI document listing every problem
response, docs pages that load nothing from outside, and rename/merge/move over HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from faceledger.api.app import ADMIN_KEY_FILE, create_app
from faceledger.client import Client
from faceledger.config import Settings
from faceledger.errors import Forbidden, NotFound

PROBLEM_REF = "#/components/schemas/Problem"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    data = tmp_path_factory.mktemp("openapi") / "data"
    with TestClient(create_app(Settings(data=data, rate_limit=0))) as client:
        yield client, (data / ADMIN_KEY_FILE).read_text().strip()


@pytest.fixture(scope="module")
def document(api: tuple[TestClient, str]) -> dict[str, Any]:
    response = api[0].get("/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_this_server(
    api: tuple[TestClient, str], page: str
) -> None:
    client, _ = api
    html = client.get(page)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
    urls += re.findall(r"""(?:url|spec-url)\s*:\s*['"]([^'"]+)['"]""", html.text)
    assert any(u.endswith(".js") for u in urls), urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from outside"
        assert client.get(url).status_code == 200, url
    assert "cdn." not in html.text and "googleapis" not in html.text


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_error_response_is_problem_json(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            schema = response["content"]["application/problem+json"]["schema"]
            assert schema == {"$ref": PROBLEM_REF}, (path, method, status)
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "code", "detail"} <= set(problem["required"])


@pytest.mark.parametrize(
    ("path", "method", "must"),
    [
        ("/v1/collections", "post", {401, 403, 409, 413, 422, 429}),
        ("/v1/collections/{collection}", "delete", {401, 403, 404, 429}),
        ("/v1/collections/{collection}/persons/{person}", "patch", {401, 403, 404, 409, 413}),
        ("/v1/collections/{collection}/persons/{person}/merge", "post", {401, 403, 404, 409}),
        ("/v1/collections/{collection}/faces/move", "post", {401, 403, 404, 409, 413}),
        (
            "/v1/collections/{collection}/persons/{person}/faces",
            "post",
            {401, 403, 404, 409, 413, 415, 422, 429},
        ),
        (
            "/v1/collections/{collection}/identify",
            "post",
            {401, 403, 404, 413, 415, 422, 429, 503},
        ),
        ("/v1/detect", "post", {401, 403, 413, 415, 422, 429, 503, 504}),
        ("/v1/videos", "post", {401, 403, 404, 413, 422, 429, 507}),
        ("/v1/verify", "post", {401, 403, 404, 413, 415, 422, 429}),
        ("/v1/keys", "get", {401, 403, 429}),
        ("/v1/audit", "get", {401, 403, 429}),
    ],
)
def test_routes_document_the_problems_they_can_return(
    document: dict[str, Any], path: str, method: str, must: set[int]
) -> None:
    documented = {int(s) for s in document["paths"][path][method]["responses"]}
    assert must <= documented, sorted(must - documented)


def test_every_keyed_route_documents_401_and_429(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        if path == "/healthz":
            assert not {s for s in operation["responses"] if int(s) >= 400}
            continue
        documented = {int(s) for s in operation["responses"]}
        assert {500, 504} <= documented, (path, method)
        if operation.get("security"):  # takes X-API-Key (a few routes are public)
            assert {401, 429} <= documented, (path, method)
        if "{" in path:
            assert 404 in documented, (path, method)


def test_rename_merge_and_move_over_http(api: tuple[TestClient, str], faces_dir: Path) -> None:
    """Through the Python client, as an enroller: rename, merge, move; a searcher may not."""
    http, admin_key = api
    admin = http.headers.copy()
    admin["X-API-Key"] = admin_key
    enroller_key = http.post("/v1/keys", json={"role": "enroller"}, headers=admin).json()["key"]
    searcher_key = http.post("/v1/keys", json={"role": "searcher"}, headers=admin).json()["key"]
    http.post("/v1/collections", json={"name": "m", "require_consent": False}, headers=admin)

    def client_for(key: str) -> Client:
        client = Client("http://testserver", key)
        client._http.close()
        http.headers["X-API-Key"] = key
        client._http = http  # the in-process app, over the client's own code path
        return client

    ids = faces_dir / "faceapi_bbt/identities"
    enroller = client_for(enroller_key)
    for person, files in (("amy", ["amy1", "amy2"]), ("amy2", ["amy3"]), ("raj", ["raj1"])):
        enroller.create_person("m", person)
        for f in files:
            enroller.enroll("m", person, (ids / person.rstrip("2") / f"{f}.png").read_bytes())
    renamed = enroller.rename_person("m", "amy", "amy_farrah_fowler")
    assert renamed["name"] == "amy_farrah_fowler"
    assert enroller.get_person("m", "amy_farrah_fowler")["face_count"] == 2
    with pytest.raises(NotFound):
        enroller.get_person("m", "amy")
    merged = enroller.merge_persons("m", "amy2", "amy_farrah_fowler")
    assert merged["face_count"] == 3
    with pytest.raises(NotFound):
        enroller.get_person("m", "amy2")
    raj_face = next(f["id"] for f in http.get("/v1/collections/m/persons/raj/faces").json())
    moved = enroller.move_faces("m", [raj_face], "amy_farrah_fowler")
    assert moved["face_count"] == 4
    assert enroller.get_person("m", "raj")["face_count"] == 0
    with pytest.raises(Forbidden):
        client_for(searcher_key).merge_persons("m", "raj", "amy_farrah_fowler")
    http.headers["X-API-Key"] = enroller_key
    bad = http.post("/v1/collections/m/faces/move", json={"face_ids": [], "to": "raj"})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    http.headers.pop("X-API-Key")
