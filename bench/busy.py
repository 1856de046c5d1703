"""One busy process beside a benchmark: the "another program is busy on the same CPU" condition.

The busy process is a Python loop that never sleeps (`python -c "while True: pass"`): one core's
worth of demand at normal priority, touching almost no memory, like a build or a test suite that
happens to run beside training or a server. The benches start it themselves and always stop it
(`with busy_process(): ...`), so a failed run leaves nothing spinning.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

BUSY_CODE = "while True: pass"
SPIN_UP_S = 0.5  # running, and spinning, before the measurement starts


def start_busy() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", BUSY_CODE])
    time.sleep(SPIN_UP_S)
    return proc


def stop(proc: subprocess.Popen, wait_s: float = 5) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def busy_process() -> Iterator[subprocess.Popen]:
    """One busy process for the `with` block; stopped however the block ends."""
    proc = start_busy()
    try:
        yield proc
    finally:
        stop(proc)
