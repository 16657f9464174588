"""Webhooks: a signed POST to the submitter's URL when a video job ends.

The body is JSON naming the job and how it ended, never its result (the receiver fetches
that with its own key, so no name travels to a URL). It is signed with HMAC-SHA256 under
a secret made for the job and shown once, when the job is submitted: the header
``X-Faceledger-Signature: t=<unix seconds>,v1=<hex>`` carries the MAC of
``"<t>.<body>"``, the scheme Stripe's webhooks use (the time inside the MAC stops an old
delivery from being replayed later). :func:`verify` is the receiver's check. A delivery
is retried with backoff; its outcome is kept with the job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from faceledger.errors import InvalidArgument

SIGNATURE_HEADER = "X-Faceledger-Signature"
EVENT_HEADER = "X-Faceledger-Event"
MAX_URL_LENGTH = 2048
ATTEMPTS = 4
BACKOFF_SECONDS = 1.0
"""Wait before the second attempt; doubled before each later one."""
TIMEOUT_SECONDS = 10.0
TOLERANCE_SECONDS = 300
"""How old a signature :func:`verify` accepts by default."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where a job's end is announced, and the secret its deliveries are signed with."""

    url: str
    secret: str

    @classmethod
    def new(cls, url: str) -> Webhook:
        """A webhook to ``url`` (checked) with a fresh 256-bit secret."""
        return cls(check_url(url), secrets.token_hex(32))


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of a delivery: the receiver's last status, attempts made, last error."""

    status: int | None
    attempts: int
    error: str | None
    at: str
    """When the last attempt ended (ISO 8601, UTC)."""

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host.

    Raises:
        InvalidArgument: any other URL (another scheme, no host, credentials, too long).
    """
    if len(url) > MAX_URL_LENGTH:
        raise InvalidArgument(f"webhook URL is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument("webhook must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise InvalidArgument("webhook URL must not carry credentials")
    return url


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` under ``secret`` within ``tolerance`` seconds."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, body, timestamp).split(",v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def deliver(
    hook: Webhook,
    event: str,
    payload: dict[str, Any],
    *,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF_SECONDS,
    timeout: float = TIMEOUT_SECONDS,
    stop: threading.Event | None = None,
) -> Delivery:
    """POST ``payload`` as JSON, signed, until a 2xx answer or ``attempts`` run out.

    ``stop`` (a ``threading.Event``) cuts the waits between attempts short when set.
    Redirects are not followed: a receiver answers where it was registered.
    """
    body = json.dumps({"event": event, **payload}, separators=(",", ":")).encode()
    status: int | None = None
    error: str | None = None
    made = 0
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for made in range(1, attempts + 1):
            headers = {
                "Content-Type": "application/json",
                EVENT_HEADER: event,
                SIGNATURE_HEADER: signature(hook.secret, body, int(time.time())),
            }
            try:
                status = client.post(hook.url, content=body, headers=headers).status_code
                error = None if 200 <= status < 300 else f"HTTP {status}"
            except httpx.HTTPError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"
            if error is None or made == attempts:
                break
            wait = backoff * 2 ** (made - 1)
            if (stop or threading.Event()).wait(wait):  # set: the server is stopping
                break
    return Delivery(status, made, error, datetime.now(UTC).isoformat(timespec="seconds"))
