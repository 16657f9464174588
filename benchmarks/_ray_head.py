"""A Ray head on this machine for the Ray benchmarks: token authentication, no dashboard."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def ray_env() -> dict[str, str]:
    """This process's environment with a fresh Ray token (set here too, for ``ray.init``),
    to pass to the faceledger commands that connect to the head."""
    env = {
        **os.environ,
        "RAY_DISABLE_USAGE_STATS": "1",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
    }
    os.environ.update(env)
    return env


@contextmanager
def local_head(cpus: int, temp: Path) -> Iterator[tuple[str, float]]:
    """Start a head with ``cpus`` CPUs (so as many worker actors); yield its address and
    the seconds it took to start; shut it down after."""
    import ray

    started = time.perf_counter()
    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        object_store_memory=200 * 1024 * 1024,
        _temp_dir=str(temp),
        configure_logging=False,
        log_to_driver=False,
    )
    seconds = time.perf_counter() - started
    try:
        yield ray.get_runtime_context().gcs_address, seconds
    finally:
        ray.shutdown()
