"""Webhooks of video jobs: signed deliveries to a real HTTP receiver, retried, verified."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from faceledger.errors import InvalidArgument
from faceledger.service.webhooks import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    Webhook,
    check_url,
    deliver,
    signature,
    verify,
)
from tests.test_api import start_server, stop_server


@dataclass
class Receiver:
    """A real HTTP server on loopback that records what it is sent."""

    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    """Statuses to answer in turn (200 once they run out)."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    class Handler(http.server.BaseHTTPRequestHandler):
        rec: ClassVar[Receiver]

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.rec.received.append((dict(self.headers.items()), body))
            status = self.rec.answers.pop(0) if self.rec.answers else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook")
    Handler.rec = rec
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def test_a_delivery_is_signed_and_retried_until_accepted(receiver: Receiver) -> None:
    receiver.answers = [500, 503]
    hook = Webhook.new(receiver.url)
    outcome = deliver(hook, "video.finished", {"job": "j1", "status": "done"}, backoff=0.05)
    assert outcome.delivered and outcome.status == 200 and outcome.attempts == 3
    assert len(receiver.received) == 3
    headers, body = receiver.received[-1]
    assert json.loads(body) == {"event": "video.finished", "job": "j1", "status": "done"}
    assert headers[EVENT_HEADER] == "video.finished"
    assert verify(hook.secret, body, headers[SIGNATURE_HEADER])
    assert not verify(hook.secret, body.replace(b"done", b"fail"), headers[SIGNATURE_HEADER])
    assert not verify("another secret", body, headers[SIGNATURE_HEADER])


def test_an_old_signature_is_refused_as_a_replay() -> None:
    body = b'{"job":"j1"}'
    old = int(time.time()) - 3600
    assert not verify("s", body, signature("s", body, old))
    assert verify("s", body, signature("s", body, old), now=old + 10)
    assert not verify("s", body, "v1=abc")  # no time
    assert not verify("s", body, "")


def test_an_unreachable_receiver_is_given_up_with_the_reason() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hook = Webhook.new(f"http://127.0.0.1:{port}/hook")
    outcome = deliver(hook, "video.finished", {"job": "j"}, attempts=2, backoff=0.01)
    assert not outcome.delivered and outcome.attempts == 2 and outcome.status is None
    assert outcome.error is not None and "ConnectError" in outcome.error


def test_a_refusing_receiver_is_given_up_with_its_status(receiver: Receiver) -> None:
    receiver.answers = [410, 410]
    outcome = deliver(Webhook.new(receiver.url), "e", {}, attempts=2, backoff=0.01)
    assert not outcome.delivered and outcome.status == 410 and outcome.error == "HTTP 410"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/x",
        "file:///etc/passwd",
        "http:///nohost",
        "https://u:p@example.org/",
        "/relative",
        "https://example.org/" + "a" * 2100,
    ],
)
def test_only_plain_http_urls_are_webhooks(url: str) -> None:
    with pytest.raises(InvalidArgument):
        check_url(url)
    assert check_url("https://example.org/hook?x=1") == "https://example.org/hook?x=1"


@pytest.mark.integration
def test_a_video_job_announces_its_end_to_its_webhook(
    receiver: Receiver, tmp_path: Path, faces_dir: Path
) -> None:
    # #15: "optional webhook on completion (signed with HMAC)", through a real server.
    clip = faces_dir / "face_recognition_examples" / "video" / "short_hamilton_clip.mp4"
    srv = start_server(tmp_path / "data", FACELEDGER_RATE_LIMIT="0")
    try:
        with srv.client(srv.admin_key) as c:
            c.create_collection("v", require_consent=False)
            with pytest.raises(InvalidArgument):
                c.submit_video("v", clip, purpose="t", webhook="file:///etc/passwd")
            assert c._call("GET", "/v1/videos") == []  # the refused upload queued nothing
            accepted = c.submit_video(
                "v",
                clip,
                purpose="webhook test",
                fps=1,
                ocr=False,
                speech=False,
                webhook=receiver.url,
            )
            secret = accepted["webhook_secret"]
            deadline = time.monotonic() + 300
            while not receiver.received and time.monotonic() < deadline:
                time.sleep(0.5)
            headers, body = receiver.received[0]
            assert verify(secret, body, headers[SIGNATURE_HEADER])
            announced = json.loads(body)
            assert announced["job"] == accepted["job"] and announced["status"] == "done"
            assert announced["event"] == "video.finished" and "result" not in announced
            job = c.video_job(accepted["job"])
            while job["webhook"]["delivered"] is None and time.monotonic() < deadline:
                time.sleep(0.2)
                job = c.video_job(accepted["job"])
            assert job["status"] == "done" and job["webhook"]["delivered"] is True
            assert job["file_name"] == clip.name  # the client names the file it sends
            assert job["webhook"]["url"] == receiver.url and "secret" not in job["webhook"]
            assert secret not in json.dumps(c._call("GET", "/v1/videos"))
    finally:
        stop_server(srv)
