"""Connecting the driver to a Ray cluster, and the one rule for how many workers it gets.

Ray is imported here and in the worker modules only, so nothing else pays for it and
faceledger runs without it installed (``pip install faceledger[ray]``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from typing import Any

from faceledger.errors import InvalidArgument

NAMESPACE = "faceledger"
"""The Ray namespace of faceledger's actors (named ``<job>-<kind>-<n>``, so an operator or
a test can find a worker with ``ray.util.list_named_actors``)."""

RETRY_FOREVER = -1
"""Worker actors are restarted after a crash, and their unfinished calls run again there
(at-least-once): the driver stores each result once, so nothing is lost or duplicated."""


def import_ray() -> Any:
    """The ``ray`` module, or a clear error when the optional dependency is missing."""
    try:
        import ray
    except ImportError as exc:  # the optional extra is not installed
        raise InvalidArgument(
            "--ray needs Ray: pip install 'faceledger[ray]' (on every node of the cluster)"
        ) from exc
    return ray


@contextmanager
def connected(address: str) -> Iterator[Any]:
    """The ``ray`` module connected to the cluster at ``address`` (``HOST:PORT`` or ``auto``).

    The driver only connects (it never starts a cluster): ``ray start --head`` on one node
    and ``ray start --address=...`` on the others, as the README shows. While connected,
    standard output goes to standard error: Ray's driver prints the cluster's messages
    (a worker restarted, a task retried) to standard output from a thread of its own, and
    the command's standard output is its result (``--json``).

    Raises:
        InvalidArgument: Ray is not installed, or no cluster answers at ``address``.
    """
    ray = import_ray()
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    with redirect_stdout(sys.stderr):
        yield from _session(ray, address)


def _session(ray: Any, address: str) -> Iterator[Any]:
    try:
        ray.init(
            address=address,
            namespace=NAMESPACE,
            log_to_driver=False,
            configure_logging=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:  # Ray's connection errors
        raise InvalidArgument(f"cannot connect to the Ray cluster at {address!r}: {exc}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def worker_count(ray: Any, wanted: int | None) -> int:
    """How many worker actors to start: ``wanted``, or one per CPU of the cluster."""
    if wanted is not None:
        if wanted < 1:
            raise InvalidArgument("--ray-workers must be at least 1")
        return wanted
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
