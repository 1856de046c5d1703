"""How many intra-op CPU threads a decoding or training loop uses: chosen by timing its steps.

torch runs each CPU operation on its intra-op threads (OpenMP), and they meet at a barrier at the
end of every operation. When another process takes one of the cores, the thread that lost its
core holds every barrier up: on the 2-core reference machine, one busy process beside
`jobgpt serve` cut its tokens/s to 0.30x of the quiet figure at 2 threads, against 0.95x at 1.
Which count is faster depends on what else runs, and that changes while a server runs; so
`ThreadPolicy` measures instead of guessing:

- it times `probe_steps` steps at the largest count, then as many at one thread fewer,
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
On CUDA or MPS the policy does nothing; pinned (`--threads N`), it sets N once.

Training and decoding use the same policy with other settings (`for_training`, `for_decoding`):
a decoding step takes milliseconds and varies (prefill, batch sizes), so a probe takes the median
of 4 steps and re-checks every 200; a training step takes about a second and is always the same
work, so 2 steps decide and it re-checks every 50, after one untimed first step (allocations,
compilation). When a probe settles on a count other than the last one (or the first time), it
logs one line: "training threads: 1 thread (measured: 2.1 ms/token at 2, 1.3 at 1)".
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

logger = logging.getLogger(__name__)

# `ThreadPolicy.for_training`'s settings: see the module docstring for why they differ.
TRAINING: dict[str, Any] = {"probe_steps": 2, "recheck_every": 50, "warmup_steps": 1}

# torch's thread count before any policy first changed it: the most a later policy may use (a
# training run that settled on 1 thread must not limit the generation that follows it to 1).
_threads_before_policies: int | None = None


def default_max_threads() -> int:
    """The thread count torch had before any `ThreadPolicy` set one (its own count till then)."""
    return _threads_before_policies or torch.get_num_threads()


class ThreadPolicy:
    """The intra-op thread count of a decoding or training loop; see the module for how it is
    chosen. `for_training` and `for_decoding` build it with the settings each loop needs."""

    def __init__(
        self,
        max_threads: int | None = None,
        pinned: int | None = None,
        recheck_every: int = 200,
        probe_steps: int = 4,
        clock: Callable[[], float] = time.perf_counter,
        device: torch.device | str = "cpu",
        slower: float = 1.5,
        *,
        warmup_steps: int = 0,
        loop: str = "decoding",
        log_level: int = logging.INFO,
    ) -> None:
        self.max_threads = max(1, max_threads or default_max_threads())
        self.pinned = pinned
        self.recheck_every = max(1, recheck_every)
        self.probe_steps = max(1, probe_steps)
        self.clock = clock
        self.slower = slower  # settled steps this many times slower than measured: probe now
        self.loop = loop  # "decoding" or "training": names the loop in the log line
        self.log_level = log_level  # of the line a settled probe logs; DEBUG under streamed text
        self.enabled = torch.device(device).type == "cpu"
        self.threads = pinned or self.max_threads  # the count the next step runs with
        self.measured: dict[int, float] = {}  # threads -> seconds per token, of the last probe
        self.settled: int | None = None  # the count the last finished probe chose
        self._applied: int | None = None  # what torch.set_num_threads was last given
        self._probing = pinned is None and self.max_threads > 1
        # first steps left untimed (allocations, compilation); none where nothing is measured
        self._warmup = max(0, warmup_steps) if self._probing else 0
        self._samples: list[float] = []
        self._settled_steps = 0
        self._started: float | None = None

    @classmethod
    def for_training(
        cls, pinned: int | None = None, device: torch.device | str = "cpu", **kwargs: Any
    ) -> ThreadPolicy:
        """Training steps: ~1 s each on a CPU and all the same work, so 2 steps per count decide
        and a re-check every 50 steps costs little; the first step (allocations, compilation)
        is not timed. `pinned` is --threads (0 or None: measure)."""
        settings = {**TRAINING, **kwargs}
        return cls(pinned=pinned or None, device=device, loop="training", **settings)

    @classmethod
    def for_decoding(
        cls, pinned: int | None = None, device: torch.device | str = "cpu", **kwargs: Any
    ) -> ThreadPolicy:
        """Decoding steps: milliseconds each, of varying work (prefill, batch sizes): the median
        of 4 steps per count, a re-check every 200 steps (the constructor's defaults)."""
        return cls(pinned=pinned or None, device=device, loop="decoding", **kwargs)

    @property
    def probing(self) -> bool:
        """True until the first probe has chosen, and while a re-check runs (bench warm-ups)."""
        return self.enabled and (self._probing or self._warmup > 0)

    def before_step(self) -> None:
        """Call right before a step, from the thread that runs it."""
        if not self.enabled:
            return
        if self._applied != self.threads:
            global _threads_before_policies
            if _threads_before_policies is None:
                _threads_before_policies = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            self._applied = self.threads
        self._started = self.clock()

    def after_step(self, rows: int) -> None:
        """Call right after the step, with the number of rows (tokens) it decoded or trained on."""
        if not self.enabled or self._started is None:
            return
        elapsed, self._started = self.clock() - self._started, None
        if self.pinned is not None or self.max_threads == 1 or rows < 1:
            return
        if self._warmup:
            self._warmup -= 1
            return
        self._samples.append(elapsed / rows)
        if self._probing:
            self._probe_step()
        else:
            self._settled_step()

    def _settled_step(self) -> None:
        """A step at the chosen count: probe again when it is time, or when steps got slower."""
        self._settled_steps += 1
        why = "re-checking" if self._settled_steps >= self.recheck_every else None
        if len(self._samples) >= self.probe_steps:
            recent, self._samples = statistics.median(self._samples), []
            if recent > self.slower * self.measured.get(self.threads, float("inf")):
                why = f"{recent * 1000:.3g} ms/token now: the machine got busier"
        if why:  # probe again, from the top
            self._probing, self.measured, self._samples = True, {}, []
            self._move(self.max_threads, why)

    def _probe_step(self) -> None:
        """A step of a probe: once a count has its steps, try one fewer while fewer is faster."""
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
        self._announce()

    def _announce(self) -> None:
        """One line when the choice is new: the first probe's, or another count than before."""
        before, self.settled = self.settled, self.threads
        level = self.log_level if before != self.threads else logging.DEBUG
        was = f", was {before}" if before is not None and before != self.threads else ""
        logger.log(level, "%s threads: %s%s", self.loop, self.describe(), was)

    def _move(self, threads: int, why: str) -> None:
        if threads != self.threads:
            logger.debug("%s threads %d -> %d (%s): %s", self.loop, self.threads, threads, why,
                         self)  # fmt: skip
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
            return f"{count} (to be measured on the first {self.loop} steps)"
        figures = [f"{s * 1000:.3g}{' ms/token' if not i else ''} at {n}"
                   for i, (n, s) in enumerate(sorted(measured.items(), reverse=True))]  # fmt: skip
        return f"{count} (measured: {', '.join(figures)})"

    def __str__(self) -> str:
        return self.describe()
