"""Progress for the long data stages: a live bar on a terminal, plain lines everywhere else.

A tqdm bar redraws itself with carriage returns; captured to a file (CI, `nohup`, an IDE's run
window, `jobgpt demo 2>log`) those become fragments glued to the log lines around them. So the
bar is drawn only when stderr is a terminal; elsewhere a plain line says how far the stage got,
at most every `PLAIN_EVERY_S` seconds, and short stages print nothing extra.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

logger = logging.getLogger(__name__)

PLAIN_EVERY_S = 10.0  # a plain progress line at most this often


class Progress:
    """Count bytes (or items) of one stage: `with Progress("encoding") as p: p.update(n)`."""

    def __init__(
        self,
        desc: str,
        unit: str = "B",
        stream: TextIO | None = None,
        every_s: float = PLAIN_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.desc, self.unit, self.every_s, self.clock = desc, unit, every_s, clock
        self.count = 0
        self._start = self._last = clock()
        stream = stream or sys.stderr
        self._bar: Any = None
        if stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(desc=desc, unit=unit, unit_scale=True, leave=False, file=stream)

    def update(self, n: int) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self.clock()
        if now - self._last >= self.every_s:
            self._last = now
            rate = self.count / max(now - self._start, 1e-9)
            logger.info(
                "%s: %s so far (%s/s)",
                self.desc,
                _amount(self.count, self.unit),
                _amount(rate, self.unit),
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _amount(n: float, unit: str) -> str:
    """12.3 MB, 4.5 kB, 980 B: decimal prefixes, as tqdm's bar shows them."""
    for prefix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {prefix}{unit}"
    return f"{n:.0f} {unit}"
