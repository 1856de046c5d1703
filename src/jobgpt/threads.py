"""How many intra-op CPU threads a decoding loop uses: chosen by timing the steps it runs anyway.

torch runs each CPU operation on its intra-op threads (OpenMP), and they meet at a barrier at the
end of every operation. When another process takes one of the cores, the thread that lost its
core holds every barrier up: on the 2-core reference machine, one busy process beside
`jobgpt serve` cut its tokens/s to 0.30x of the quiet figure at 2 threads, against 0.95x at 1.
Which count is faster depends on what else runs, and that changes while a server runs; so
`ThreadPolicy` measures instead of guessing:

- it times `probe_steps` decoding steps at the largest count, then as many at one thread fewer,
  and goes on down (to 1) while fewer threads are faster; then it keeps the fastest count;
- times are per token (a step's time over the rows it decoded: batch sizes vary) and a probe's
  figure is the median of its steps (a prefill step now and then does not decide);
- every `recheck_every` steps it probes again from the largest count, so it follows a machine
  that becomes busy, or quiet again; and at once where `probe_steps` steps in a row take
  `slower` times the measured time per token (a busy neighbour arrived; or smaller batches,
  which cost one probe).

No step is added for measuring: it times the steps the caller runs. `torch.set_num_threads` is
process-wide for new threads but sets the calling thread's own OpenMP count: call `before_step`
and `after_step` from the thread that runs the model, and let no other thread run torch work.
On CUDA or MPS the policy does nothing; pinned (`jobgpt serve --threads N`), it sets N once.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)


class ThreadPolicy:
    """The intra-op thread count of a decoding loop; see the module for how it is chosen."""

    def __init__(
        self,
        max_threads: int | None = None,
        pinned: int | None = None,
        recheck_every: int = 200,
        probe_steps: int = 4,
        clock: Callable[[], float] = time.perf_counter,
        device: torch.device | str = "cpu",
        slower: float = 1.5,
    ) -> None:
        self.max_threads = max(1, max_threads or torch.get_num_threads())
        self.pinned = pinned
        self.recheck_every = max(1, recheck_every)
        self.probe_steps = max(1, probe_steps)
        self.clock = clock
        self.slower = slower  # settled steps this many times slower than measured: probe now
        self.enabled = torch.device(device).type == "cpu"
        self.threads = pinned or self.max_threads  # the count the next step runs with
        self.measured: dict[int, float] = {}  # threads -> seconds per token, of the last probe
        self._applied: int | None = None  # what torch.set_num_threads was last given
        self._probing = pinned is None and self.max_threads > 1
        self._samples: list[float] = []
        self._settled_steps = 0
        self._started: float | None = None

    def before_step(self) -> None:
        """Call right before a decoding step, from the thread that runs it."""
        if not self.enabled:
            return
        if self._applied != self.threads:
            torch.set_num_threads(self.threads)
            self._applied = self.threads
        self._started = self.clock()

    def after_step(self, rows: int) -> None:
        """Call right after the step, with the number of rows (tokens) it decoded."""
        if not self.enabled or self._started is None:
            return
        elapsed, self._started = self.clock() - self._started, None
        if self.pinned is not None or self.max_threads == 1 or rows < 1:
            return
        self._samples.append(elapsed / rows)
        if not self._probing:
            self._settled_steps += 1
            why = "re-checking" if self._settled_steps >= self.recheck_every else None
            if len(self._samples) >= self.probe_steps:
                recent, self._samples = statistics.median(self._samples), []
                if recent > self.slower * self.measured.get(self.threads, float("inf")):
                    why = f"{recent * 1000:.3g} ms/token now: the machine got busier"
            if why:  # probe again, from the top
                self._probing, self.measured, self._samples = True, {}, []
                self._move(self.max_threads, why)
            return
        if len(self._samples) < self.probe_steps:
            return
        self.measured[self.threads] = statistics.median(self._samples)
        self._samples = []
        above = self.measured.get(self.threads + 1, float("inf"))
        if self.threads > 1 and self.measured[self.threads] <= above:
            self._move(self.threads - 1, "probing")  # faster than one more thread: try one fewer
            return
        self._probing, self._settled_steps = False, 0
        self._move(min(self.measured, key=self.measured.__getitem__), "measured")

    def _move(self, threads: int, why: str) -> None:
        if threads != self.threads:
            logger.debug("decoding threads %d -> %d (%s): %s", self.threads, threads, why, self)
        self.threads = threads

    def describe(self) -> str:
        """One line for the start-up log and /health: "2 threads (measured: 1.9 ms/token at 2,
        2.4 at 1)", "1 thread (pinned by --threads)"."""
        if not self.enabled:
            return "not set (the model runs on a GPU)"
        count = f"{self.threads} thread{'' if self.threads == 1 else 's'}"
        if self.pinned is not None:
            return f"{count} (pinned by --threads)"
        if self.max_threads == 1:
            return f"{count} (one core)"
        measured = dict(self.measured)  # read from other threads: a copy of one moment
        if not measured:
            return f"{count} (to be measured on the first decoding steps)"
        figures = [f"{s * 1000:.3g}{' ms/token' if not i else ''} at {n}"
                   for i, (n, s) in enumerate(sorted(measured.items(), reverse=True))]  # fmt: skip
        return f"{count} (measured: {', '.join(figures)})"

    def __str__(self) -> str:
        return self.describe()
