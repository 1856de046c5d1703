"""What a training run records as it goes: its pace (throughput, elapsed time, ETA), the eval
history the diagnosis reads, metrics.jsonl and the loss plot.

`Pace` measures against a clock that tests replace. `RunLog` keeps the history and the per-window
val losses that tell a rise from noise (`jobgpt.monitor.paired_noise`), writes the log lines and
metrics.jsonl (rank 0 alone), draws loss.png and warns once per diagnosis. No torch here.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jobgpt import monitor
from jobgpt.files import atomic_open
from jobgpt.monitor import format_record

logger = logging.getLogger(__name__)


# --- pace --------------------------------------------------------------------------------------


class Pace:
    """Throughput, elapsed training time and the ETA of a run, one session (one `fit`) at a time.

    Throughput counts from the last `restart` (after an eval: eval and saving time is not
    training time). The ETA counts from the end of the session's first step, which carries
    one-time costs (allocation, kernel choice, compilation), once a later step is done. The time
    budget (--max-minutes) counts from the session's start. `clock` returns seconds
    (time.monotonic); tests pass their own.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.elapsed_before = 0.0  # training time of earlier sessions (a checkpoint's elapsed_s)
        self.progress_before = 0.0  # the schedule's clock progress they reached (clock_progress)
        self.end_step = 0  # where this session ends (the ETA's target)
        self.budget_s: float | None = None
        self._start: tuple[float, int] | None = None  # (time, step) of the session; None: idle
        self._steady: tuple[float, int] | None = None  # (time, step) after its first step
        self._mark = (0.0, 0)  # (time, tokens seen) throughput counts from

    def start(self, step: int, tokens: int, end_step: int, budget_s: float | None = None) -> None:
        """A session begins at `step`, having seen `tokens`, to run until `end_step`."""
        now = self.clock()
        self.end_step, self.budget_s = end_step, budget_s or None
        self._start, self._steady, self._mark = (now, step), None, (now, tokens)

    def stepped(self, step: int) -> None:
        """A step finished; the session's first one marks where steady steps begin."""
        if self._steady is None:
            self._steady = (self.clock(), step)

    def restart(self, tokens: int) -> None:
        """Measure throughput from here on (call after an eval)."""
        self._mark = (self.clock(), tokens)

    def finish(self) -> None:
        """The session ended: its time joins the run's elapsed time (the trainer keeps the
        clock progress all ranks agreed on in `progress_before`)."""
        self.elapsed_before = self.elapsed_s()
        self._start = self._steady = None

    def session_s(self, now: float | None = None) -> float:
        """Seconds since this session started (0 between sessions)."""
        if self._start is None:
            return 0.0
        return (self.clock() if now is None else now) - self._start[0]

    def elapsed_s(self, now: float | None = None) -> float:
        """Training time of the whole run: earlier sessions plus this one so far."""
        return self.elapsed_before + self.session_s(now)

    def over_budget(self) -> bool:
        return self.budget_s is not None and self.session_s() >= self.budget_s

    def clock_progress(self) -> float:
        """The learning-rate schedule's progress by the clock, 0 to 1 (`jobgpt.optim.lr_factor`):
        the progress earlier sessions reached, then this session's time budget spreads what is
        left, so a run resumed mid-warmdown goes on down to the floor as its new budget runs out
        instead of climbing back to the peak. Without a budget it stays where it was."""
        if self.budget_s is None or self._start is None:
            return self.progress_before
        share = min(self.session_s() / self.budget_s, 1.0)
        return self.progress_before + (1.0 - self.progress_before) * share

    def record(self, step: int, tokens: int) -> dict[str, float]:
        """tokens_per_s, elapsed_s and eta_s at `step`, having seen `tokens`, for a record."""
        now = self.clock()
        start, start_step = self._start or (now, step)
        if self._steady is not None and step > self._steady[1]:
            start, start_step = self._steady
        eta = (self.end_step - step) * (now - start) / max(step - start_step, 1)
        if self.budget_s is not None:  # the session stops at its budget, whatever the steps say
            eta = min(eta, max(self.budget_s - self.session_s(now), 0.0))
        mark_time, mark_tokens = self._mark
        return {
            "tokens_per_s": (tokens - mark_tokens) / max(now - mark_time, 1e-9),
            "elapsed_s": self.elapsed_s(now),
            "eta_s": eta,
        }


# --- files -------------------------------------------------------------------------------------


class MetricsLog:
    """`metrics.jsonl`: one JSON object per logged step or eval, appended as the run goes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def reset(self, keep_through_step: int | None = None) -> None:
        """Start the file afresh, or (on resume) keep only records up to the checkpoint's step,
        so steps that are about to be redone do not appear twice."""
        kept = []
        if keep_through_step is not None:
            kept = [r for r in self.read() if r["step"] <= keep_through_step]
        with atomic_open(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut short (disk full, kill -9): skip it
                    continue
        return [r for r in records if isinstance(r, dict) and "step" in r]


def plot_losses(records: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Train and val loss vs step as a PNG, written atomically.

    Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch), and
    imports it here so that a run which never plots never pays for the import.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    evals = [r for r in records if r["kind"] == "eval"]
    steps = [r for r in records if r["kind"] == "step"]
    fig = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if steps:
        ax.plot(
            [r["step"] for r in steps],
            [r["loss"] for r in steps],
            color="0.75",
            lw=0.8,
            label="train (batch)",
        )
    ax.plot([r["step"] for r in evals], [r["train_loss"] for r in evals], "o-", label="train")
    ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val")
    if evals:
        best = min(evals, key=lambda r: r["val_loss"])
        ax.axvline(best["step"], color="0.5", ls=":", lw=1, label=f"best val @ {best['step']}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


# --- the run's record --------------------------------------------------------------------------


class RunLog:
    """The evals of a run and what they say: the history the diagnosis reads, the per-window
    val losses of the last `patience` + 1 evals (a rise is judged against their noise), the log
    lines, metrics.jsonl and loss.png (written by rank 0 alone; every rank keeps the history, so
    all agree on best.pt and on stopping early) and one warning per new diagnosis."""

    def __init__(self, out_dir: Path, patience: int, writes: bool) -> None:
        self.out_dir, self.patience, self.writes = out_dir, patience, writes
        self.metrics = MetricsLog(out_dir / "metrics.jsonl")
        # {"step", "train_loss", "val_loss", "val_bpb"[, "val_noise"]} per eval
        self.history: list[dict[str, Any]] = []
        self.recent_val_windows: deque[list[float]] = deque(maxlen=patience + 1)
        self._last_diagnosis: str | None = None

    def record(self, record: dict[str, Any], max_steps: int) -> None:
        """One record: its log line, and its line in metrics.jsonl."""
        if self.writes:
            logger.info(format_record(record, max_steps))
            self.metrics.append(record)

    def add_eval(self, record: dict[str, Any], val_windows: list[float]) -> bool:
        """Add an eval (its record and per-window val losses) to the history; True when its
        val loss is the best so far (it goes to best.pt)."""
        improved = all(record["val_loss"] < h["val_loss"] for h in self.history)
        self.recent_val_windows.append(val_windows)
        entry = {k: record[k] for k in ("step", "train_loss", "val_loss", "val_bpb") if k in record}
        recent = self.recent_val_windows
        if len(recent) == recent.maxlen:  # patience evals ago -> now
            entry["val_noise"] = monitor.paired_noise(recent[0], recent[-1])
        self.history.append(entry)
        return improved

    def judge(
        self, lr: float, early_stop: bool, muon_lr: float | None = None
    ) -> monitor.Diagnosis | None:
        """The diagnosis of the history so far; warns when it changes, redraws loss.png."""
        diagnosis = monitor.diagnose(
            self.history, self.patience, lr, early_stop=early_stop, muon_lr=muon_lr
        )
        if self.writes:
            plot_losses(self.metrics.read(), self.out_dir / "loss.png")
            kind = diagnosis.kind if diagnosis else None
            if diagnosis and kind != self._last_diagnosis:
                logger.warning("warning: %s", diagnosis.message)
            self._last_diagnosis = kind
        return diagnosis

    def state(self) -> dict[str, Any]:
        return {"history": self.history, "recent_val_windows": list(self.recent_val_windows)}

    def load(self, state: dict[str, Any]) -> None:
        self.history = list(state["history"])
        self.recent_val_windows.extend(state.get("recent_val_windows", []))

    def start_over(self) -> None:
        """Forget the history (the val split changed: old and new val losses do not compare)."""
        self.history = []
        self.recent_val_windows.clear()
