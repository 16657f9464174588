"""The faceledger CLI run as a timed subprocess, as the benchmarks that compare a local
run with a Ray run call it (a fresh process each time, so nothing is warm)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping, Sequence


def timed_cli(
    args: Sequence[str], env: Mapping[str, str], *, ok: Sequence[int] = (0,)
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``python -m faceledger ARGS``; its completed process and wall seconds.

    Raises:
        SystemExit: the exit code is not in ``ok`` (with the end of its standard error).
    """
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "faceledger", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode not in ok:
        raise SystemExit(f"{list(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc, seconds
