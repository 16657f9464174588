"""The OpenAPI document: every problem+json response a route can give, with its schema.

FastAPI documents only a route's success and its 422. The problem responses are derived
here from what each route is made of, so a new route is documented by construction:

===========  ================================================================
401, 429     the route authenticates a key (``deps.get_key``, which also rate-limits)
403          the route checks the key's role (``deps.require``)
404          a path parameter, or a ``collection``/``person`` query, names a resource
409          the route touches a collection (its model may have changed) or creates
             a named resource (POST with a JSON body)
413          the route takes a request body (``BodyLimit``)
415, 503     the route decodes an uploaded image (``uploads.read_image`` and kin);
             503 when every image slot is busy and the queue is full
422          the route has any parameter or body (validation, or a refused face)
507          ``POST /v1/videos``: the uploads held would exceed the disk quota
500, 504     every route but ``/healthz``: unexpected errors, and ``Timeout``
===========  ================================================================
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field

from faceledger.api.problems import PROBLEM

UPLOAD_READERS = frozenset({"read_image", "_two_images", "_many_images"})
"""Dependencies that decode uploaded images (so the route may answer 415)."""
RESOURCE_QUERIES = frozenset({"collection", "person"})

DESCRIPTIONS = {
    401: "No API key, or an unknown or revoked one (`unauthenticated`).",
    403: "The key's role may not do this (`forbidden`).",
    404: "The collection, person, face, key or job does not exist (`not_found`).",
    409: "A name already taken, embeddings of another model, or a limit reached "
    "(`conflict`, `limit_exceeded`).",
    413: "The body, image or video is larger than allowed (`image_too_large`, `video_too_large`).",
    415: "The upload is not an image format the server decodes (`unsupported_format`).",
    422: "Malformed request, or a refused face: `invalid_argument`, `no_face`, "
    "`multiple_faces`, `quality_too_low`, `purpose_required`, `consent_required`, "
    "`corrupt_image`.",
    429: "Too many requests for this key; see `Retry-After` (`rate_limited`).",
    500: "An unexpected error, logged on the server (`internal_error`).",
    503: "Every image slot is busy and the queue is full; see `Retry-After` (`overloaded`).",
    507: "The uploads held would exceed the disk quota; see `Retry-After` (`storage_full`).",
    504: "The request took too long and was abandoned; nothing changed (`timeout`).",
}


class Problem(BaseModel):
    """An RFC 9457 problem: every error response (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI of this server describing the problem type.")
    title: str
    status: int
    code: str = Field(description="Stable machine code, e.g. `no_face` or `not_found`.")
    detail: str = Field(description="What went wrong and, where there is one, the fix.")


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _call_names(route: RouteContext) -> set[str]:
    return {getattr(d.call, "__qualname__", "") for d in _dependants(route.dependant)}


def problem_statuses(route: RouteContext) -> list[int]:
    """The problem statuses a route can answer with (see the module docstring)."""
    names = _call_names(route)
    deps = list(_dependants(route.dependant))
    queries = {p.name for d in deps for p in d.query_params}
    has_body = any(d.body_params for d in deps) or bool(names & UPLOAD_READERS)
    writes = bool((route.methods or set()) & {"POST", "PUT", "PATCH"})
    statuses = {500, 504}
    if "get_key" in names:
        statuses |= {401, 429}
    if any(n.startswith("require.") for n in names):
        statuses.add(403)
    if route.dependant.path_params or queries & RESOURCE_QUERIES:
        statuses.add(404)
    if "collection" in queries or any(p.name == "collection" for p in deps[0].path_params):
        statuses.add(409)
    if writes and any(d.body_params for d in deps):
        statuses.add(409)
    if writes:
        statuses.add(413)
    if names & UPLOAD_READERS:
        statuses |= {415, 503}
    if route.path_format == "/v1/videos" and "POST" in (route.methods or set()):
        statuses.add(507)
    if has_body or queries or route.dependant.path_params:
        statuses.add(422)
    if route.path_format == "/healthz":
        statuses = set()
    return sorted(statuses)


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with its problem responses (cached on the app)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    problem = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = doc["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in problem_statuses(route):
                responses[str(status)] = {"description": DESCRIPTIONS[status], "content": problem}
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused not in str(doc["paths"]):
            schemas.pop(unused, None)
    app.openapi_schema = doc
    return doc


def install(app: FastAPI) -> None:
    """Serve :func:`build_openapi` at the app's ``openapi_url``."""

    def openapi() -> dict[str, Any]:
        return build_openapi(app)

    app.openapi = openapi  # type: ignore[method-assign]
