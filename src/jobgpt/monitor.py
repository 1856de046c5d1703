"""Judging a training run: the plan's small-data facts, the overfit/stall diagnosis, the final
verdict, and the words and numbers its log lines use.

Everything here is a pure function of numbers (`plan_report`, `diagnose`, `summarize`), so it
can be tested on synthetic curves; what a run records and writes is `jobgpt.metrics`. No torch.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# A change smaller than this (in nats) is noise, not an improvement.
MIN_DELTA = 1e-3
# A val loss rise counts as overfitting only past this many standard errors of its noise (~95%).
NOISE_Z = 2.0
# Repeating data: a few epochs are nearly as good as fresh text, returns fade past ~16 and vanish
# by ~40 (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models"). Past this many
# epochs, expect the model to memorise rather than learn.
MANY_EPOCHS = 16.0
# Fewer val windows than this give a val loss that jumps by more than the changes it should show.
FEW_VAL_WINDOWS = 8
# The usual step when tuning a learning rate by hand: half a decade.
LR_FACTOR = 3.0
# An untrained model predicts every token alike: loss ln(vocab). A best val loss above this share
# of it means the model has learned next to nothing (even a unigram table gets well below).
UNTRAINED_SHARE = 0.9


# --- the plan, before the first step -----------------------------------------------------------


def plan_report(
    *,
    params: int,
    tokens_per_step: int,
    max_steps: int,
    train_tokens: int,
    val_tokens: int,
    block_size: int,
    max_minutes: float = 0.0,
) -> tuple[list[str], list[str]]:
    """(facts, warnings) about how much data the planned run has, for the start-up report.
    With a time budget the step count is a ceiling, and the report says so: a run capped at
    100,000 steps and 15 minutes is not a 280-epoch plan on a laptop."""
    planned = tokens_per_step * max_steps
    epochs = planned / max(train_tokens, 1)
    budget = f" (at most: the {max_minutes:g}-minute budget may end the run first)"
    ceiling = budget if max_minutes > 0 else ""
    val_windows = max(val_tokens - 1, 0) // block_size  # non-overlapping, as evaluation reads
    facts = [
        f"data: {train_tokens:,} train / {val_tokens:,} val tokens "
        f"({plural(val_windows, 'val window')} of {block_size} tokens)",
        f"plan: {max_steps:,} steps x {tokens_per_step:,} tokens = {planned:,} tokens "
        f"= {epochs:.1f} epochs{ceiling}; {train_tokens / max(params, 1):.2f} train tokens per "
        "parameter (compute-optimal is ~20)",
    ]
    warnings = []
    if epochs > MANY_EPOCHS:
        warnings.append(
            f"the plan reads the training data {epochs:.0f} times ({epochs:.0f} epochs){ceiling}: "
            "expect overfitting (과적합 예상) — val loss will turn up while train loss keeps "
            "falling. The run keeps best.pt at the lowest val loss; more data, fewer --max-steps, "
            "--dropout 0.1 or --early-stop all help"
        )
    if val_windows < FEW_VAL_WINDOWS:
        warnings.append(
            f"the val split holds only {plural(val_windows, 'window')}: its loss will be noisy "
            "(검증 데이터가 적어 val loss가 흔들립니다) — hold out more text "
            "(a larger --val-fraction in the dataset stage) before trusting small differences"
        )
    return facts, warnings


# --- diagnosis during the run ------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnosis:
    kind: str  # "overfitting" or "stalled"
    message: str  # plain words, English and Korean, with the suggested fix
    fix: str = ""  # the suggested fix alone, short enough for the final one-line verdict
    lr_factor: float = 1.0  # the suggested change of the learning rate (3: raise it 3x)


def diagnose(
    history: Sequence[dict[str, Any]],
    patience: int,
    lr: float,
    early_stop: bool = False,
    muon_lr: float | None = None,
) -> Diagnosis | None:
    """Look at the eval history ({"step", "train_loss", "val_loss"} per eval) for trouble.

    Overfitting: no new best val loss for `patience` evals, val loss higher than `patience`
    evals ago by more than NOISE_Z times its noise (`val_noise`, where recorded: see
    `paired_noise`), while train loss is lower. A smaller rise says nothing about text the model
    has not seen. Stalled: neither loss beat its earlier best for
    `patience` evals. `lr` is the configured peak learning rate (and `muon_lr` Muon's, when
    the run uses it), for the suggested change;
    `early_stop`, whether the run already stops itself (then it is not suggested).
    """
    if patience < 1 or len(history) <= patience:
        return None
    train = [h["train_loss"] for h in history]
    val = [h["val_loss"] for h in history]
    before, window = slice(None, -patience), slice(-patience, None)
    val_improved = min(val[window]) < min(val[before]) - MIN_DELTA
    train_improved = min(train[window]) < min(train[before]) - MIN_DELTA
    best = min(range(len(val)), key=val.__getitem__)
    best_step, best_val = history[best]["step"], val[best]
    old_val, old_train = val[-1 - patience], train[-1 - patience]
    noise = noise_of(history[-1])
    rose = val[-1] > old_val + noise
    if not val_improved and rose and train[-1] < old_train - MIN_DELTA:
        fixes = "more data, fewer --max-steps, a higher --dropout" + (
            "" if early_stop else ", or --early-stop"
        )
        return Diagnosis(
            "overfitting",
            f"overfitting (과적합): over the last {patience} evals val loss rose "
            f"{old_val:.4f} -> {val[-1]:.4f} (more than its noise, ±{noise:.4f}) while train "
            f"loss fell {old_train:.4f} -> {train[-1]:.4f}. The model is memorising the "
            f"training text instead of learning what carries over (훈련 문장을 외우는 중). "
            f"best.pt keeps step {best_step} (val {best_val:.4f}). Fixes: {fixes}.",
            "use best.pt",
        )
    if not val_improved and not train_improved:
        return _stalled(train, patience, (lr, muon_lr), best_step, best_val)
    return None


def noise_of(entry: dict[str, Any]) -> float:
    """How far a val loss must move to count, at this eval: NOISE_Z standard errors of its
    recorded noise (`paired_noise`), and never less than MIN_DELTA."""
    return max(MIN_DELTA, NOISE_Z * (entry.get("val_noise") or 0.0))


def paired_noise(then: Sequence[float], now: Sequence[float]) -> float:
    """The standard error of the change in mean val loss from `then` to `now` (the loss of
    each val window at two evals). The val windows are the same at every eval, so the change is
    measured on each of them: its spread over the windows says how much of it is chance."""
    diffs = [b - a for a, b in zip(then, now, strict=True)]
    if len(diffs) < 2:
        return 0.0
    return statistics.stdev(diffs) / math.sqrt(len(diffs))


def _lr_flags(lrs: tuple[float, float | None], factor: float) -> str:
    """ "--lr 1.0e-03", and "--muon-lr 6.7e-03" beside it when the run uses Muon."""
    lr, muon_lr = lrs
    flags = f"--lr {lr * factor:.1e}"
    return flags + (f" --muon-lr {muon_lr * factor:.1e}" if muon_lr else "")


def _stalled(
    train: list[float],
    patience: int,
    lrs: tuple[float, float | None],
    best_step: int,
    best_val: float,
) -> Diagnosis:
    """Which way to move the learning rate: a loss that bounces means too high, flat too low."""
    recent = train[-1 - patience :]
    rises = sum(b > a + MIN_DELTA for a, b in itertools.pairwise(recent))
    head = (
        f"stalled (학습 정체): neither train nor val loss improved for {patience} evals "
        f"(best val {best_val:.4f} at step {best_step}). "
    )
    if rises:
        fix = f"try {_lr_flags(lrs, 1 / LR_FACTOR)} ({LR_FACTOR:.0f}x lower)"
        return Diagnosis(
            "stalled",
            head + f"Train loss goes up and down ({rises} of {patience} evals rose): the "
            f"learning rate is probably too high (학습률이 너무 높음) — {fix}, and keep "
            "--grad-clip on.",
            f"the learning rate is probably too high: {fix}",
            1 / LR_FACTOR,
        )
    fix = f"try {_lr_flags(lrs, LR_FACTOR)} ({LR_FACTOR:.0f}x higher)"
    return Diagnosis(
        "stalled",
        head + f"Train loss is flat: the learning rate may be too low (학습률이 너무 낮음) — "
        f"{fix}; if that does not help, the model is at its capacity for this data (a larger "
        "--n-embd/--n-layer may).",
        f"the learning rate may be too low: {fix}",
        LR_FACTOR,
    )


def summarize(
    history: Sequence[dict[str, Any]],
    *,
    vocab_size: int | None = None,
    lr: float | None = None,
    diagnosis: Diagnosis | None = None,
    best_command: str | None = None,
    more_steps_command: str | None = None,
) -> str:
    """The final one-line verdict: best val loss and where, final losses, what they mean, and
    the command to run next.

    `vocab_size` lets it compare with an untrained model (loss ln(vocab)); `lr` is the run's
    peak learning rate; `diagnosis` is `diagnose()` on the whole history, so the verdict agrees
    with the last warning of the run; the commands are those to sample from best.pt and to
    train on.
    """
    if not history:
        return "no evaluation was run (the run stopped before its first eval)"
    best = min(history, key=lambda h: h["val_loss"])
    last = history[-1]
    gap = last["val_loss"] - last["train_loss"]
    stalled = diagnosis is not None and diagnosis.kind == "stalled"
    more = f": `{more_steps_command}`" if more_steps_command else ""
    untrained = math.log(vocab_size) if vocab_size and vocab_size > 1 else None
    if untrained is not None and best["val_loss"] > UNTRAINED_SHARE * untrained:
        if stalled and diagnosis.lr_factor < 1:  # bouncing: the LR is too high, not too low
            fix = diagnosis.fix
        else:  # far from where a model learns: a decade, not the stall's half decade
            fix = (
                f"raise --lr (this run: {lr:g}; try {10 * lr:.1e} or more)" if lr else "raise --lr"
            )
        meaning = (
            f"the model has barely learned anything (거의 학습되지 않음): an untrained model "
            f"scores ln(vocab {vocab_size:,}) = {untrained:.4f}"
            + ("; training stalled" if stalled else "")
            + f" — {fix} and/or train more steps{more}"
        )
    elif last["val_loss"] > best["val_loss"] + noise_of(last) and last["step"] > best["step"]:
        use = f": `{best_command}`" if best_command else ""
        meaning = (
            f"val loss is {last['val_loss'] - best['val_loss']:.3f} above its best: the model "
            f"overfit after step {best['step']} (과적합) — use best.pt{use}"
        )
    elif stalled:
        meaning = f"training stalled (학습 정체) — {diagnosis.fix}"
    elif gap > 0.1 * max(last["val_loss"], MIN_DELTA):
        meaning = (
            f"val is {gap:.3f} above train: the model fits its training text better than new "
            "text (일반화 격차); more data (or --dropout 0.1) would close the gap"
        )
    else:
        meaning = (
            "train and val agree and val is at (or within noise of) its best: the model is still "
            "learning "
            f"(아직 학습 중) — more steps (or a larger model) should help{more}"
        )
    return (
        f"best val loss {best['val_loss']:.4f} at step {best['step']} "
        f"(ppl {math.exp(min(best['val_loss'], 50)):.2f}); final train {last['train_loss']:.4f} "
        f"/ val {last['val_loss']:.4f} — {meaning}"
    )


# --- formatting --------------------------------------------------------------------------------


def plural(n: int, noun: str) -> str:
    """1 -> '1 window', 3 -> '3 windows' (nouns that take an s)."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def format_duration(seconds: float) -> str:
    """90 -> '1m30s', 4000 -> '1h06m'; short and fixed-format for log lines."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_record(rec: dict[str, Any], max_steps: int) -> str:
    """One fixed-format log line for a metrics record (an eval, or a lighter step record)."""
    width = len(str(max_steps))
    head = f"step {rec['step']:>{width}}/{max_steps}"
    timing = (
        f"lr {rec['lr']:.2e} | {rec['tokens_per_s']:,.0f} tok/s | "
        f"{format_duration(rec['elapsed_s'])} elapsed, ETA {format_duration(rec['eta_s'])}"
    )
    if rec["kind"] == "eval":
        return (
            f"{head} | eval | train {rec['train_loss']:.4f} | val {rec['val_loss']:.4f} "
            f"(ppl {rec['val_ppl']:.2f}, {rec['val_bpb']:.3f} bits/byte) | {timing}"
        )
    return f"{head} | loss {rec['loss']:.4f} | {timing}"
