"""ASGI guards: body size cap (413 before reading everything), request timeout, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceledger.budget import bounded
from faceledger.service.work import RequestGuard, abandon_on

REQUESTS = Counter("faceledger_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("faceledger_request_seconds", "HTTP request latency", ["method", "route"])


async def _send_problem(send: Send, status: int, code: str, detail: str) -> None:
    body = json.dumps(
        {
            "type": f"/problems/{code}",
            "title": code.replace("_", " "),
            "status": status,
            "code": code,
            "detail": detail,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse bodies over ``max_bytes``: by Content-Length at once, else while streaming.

    ``overrides`` maps path prefixes to their own caps (video uploads are larger).
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, overrides: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.default_max = max_bytes
        self.overrides = overrides or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        max_bytes = next(
            (v for p, v in self.overrides.items() if path.startswith(p)), self.default_max
        )
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            await _send_problem(
                send, 413, "image_too_large", f"request body over {max_bytes} bytes"
            )
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_problem(
                    send, 413, "image_too_large", f"request body over {max_bytes} bytes"
                )


async def _disconnected(receive: Receive, body_read: asyncio.Event) -> None:
    """Return when the client hangs up (listened for once the app has read the body)."""
    await body_read.wait()
    while (await receive())["type"] != "http.disconnect":
        pass


class Timeout:
    """Answer 504 when a request takes longer than ``seconds``, and abandon its work; abandon
    it too when its client disconnects before the answer.

    The request runs under a :class:`~faceledger.service.work.RequestGuard`: at the
    deadline, or when the client hangs up, the guard decides between giving up and the
    request's commit. If the work had not begun to commit it is abandoned (it rolls back
    instead of committing) and the client gets 504 (a client that hung up gets nothing);
    if it had, its answer is awaited and sent. So a 504, or a dropped connection, means
    that nothing changed unless the answer was already on its way.
    """

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        body_read = asyncio.Event()

        async def tracking_receive() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read.set()  # from here on, receive() only reports a disconnect
            return message

        guard = RequestGuard()
        # the task copies this context, threads it starts too: the request's work is
        # abandoned with it, and refused (503) rather than queued when images are backed up
        with abandon_on(guard), bounded():
            task = asyncio.ensure_future(self.app(scope, tracking_receive, tracking_send))
        hangup = asyncio.ensure_future(_disconnected(receive, body_read))
        try:
            done, _ = await asyncio.wait(
                {task, hangup}, timeout=self.seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            hangup.cancel()
        if task in done:
            task.result()  # the app's own outcome, exceptions included
            return
        if not guard.try_abandon():
            await task  # it is committing: its answer, not a 504
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if not started and hangup not in done:
            await _send_problem(send, 504, "timeout", f"request took longer than {self.seconds} s")


class Metrics:
    """Count requests and time them per route template (never per raw path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route: Any = scope.get("route")
            name = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], name, str(status["code"])).inc()
            LATENCY.labels(scope["method"], name).observe(time.perf_counter() - start)
