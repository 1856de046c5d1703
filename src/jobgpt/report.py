"""What `jobgpt train` tells the user: the start-up report, the final verdict, the divergence error,
which checkpoint survives an abrupt end, and the commands to run next.

Pure functions of the config and plain values the trainer measured, so every sentence can be
tested without training anything. Judging the run (overfitting, stalls, the verdict's meaning)
is `jobgpt.monitor`'s; this module puts those judgements into the report's words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobgpt import monitor
from jobgpt.commands import command
from jobgpt.config import ModelConfig, TrainConfig

# Why 2,000 steps by default (TrainConfig.max_steps): the reference run reads batch 16 x 256 =
# 4,096 tokens per step, so 2,000 steps read 8.2 M tokens: 12 epochs of the 683 K training tokens
# that `jobgpt demo-data` + the default tokenizer and dataset stages produce. A ~18 M-parameter
# model would want ~20 tokens per parameter (370 M) — far more text than a personal corpus has —
# so data, not compute, limits these runs, and the question is how often to repeat it. Studies of
# data-constrained training (Muennighoff et al. 2023) find a few epochs nearly as good as fresh
# text, diminishing returns past ~16 and little gain beyond ~40: 12 epochs still learns, and
# best.pt plus the overfitting warning cover a smaller corpus (the report shows its epochs).
DEFAULT_STEPS_WHY = (
    "repeated small data still pays off up to ~16 epochs; set --max-steps or --max-minutes to "
    "change"
)


def train_command(cfg: TrainConfig, *flags: str) -> str:
    """The seed script with `flags`, plus --data-dir/--out-dir where this run's are not the
    defaults: a command to copy and run as printed."""
    parts = list(flags)
    for name in ("data_dir", "out_dir"):
        value = str(getattr(cfg, name))
        if value != getattr(TrainConfig(), name):
            parts += [f"--{name.replace('_', '-')}", value]
    return command("train", *parts)


# --- the start-up report -----------------------------------------------------------------------


@dataclass(frozen=True)
class RunFacts:
    """What the start-up report states beyond the config: the trainer's choices and measures."""

    device: str  # "cpu (2 threads)", "cuda (NVIDIA H200)"
    world_size: int  # processes
    dtype: str  # the autocast compute dtype, "float32" when none
    dtype_why: str
    compile_why: str
    params: int
    tokens_per_step: int  # over all processes
    warmup: int  # warmup steps as used (capped)
    warmup_cap_percent: int  # the cap, in percent of max_steps
    train_tokens: int
    val_tokens: int
    eval_windows: tuple[int, int]  # (train, val) windows measured at each eval
    val_bytes: int  # UTF-8 bytes of the val windows' targets (bits per byte)
    resumed_step: int | None = None  # the checkpoint's step on --resume
    checkpoint_world_size: int = 1  # processes that trained the checkpoint
    changes: tuple[str, ...] = ()  # settings changed from the checkpoint's, as "lr 1 -> 2"
    documents_fit: str = ""  # "62% of training documents fit the 256-token context"
    threads: str = ""  # CPU thread policy: "2 threads (to be measured on the first steps)"


def startup_report(
    cfg: TrainConfig, model: ModelConfig, facts: RunFacts
) -> tuple[list[str], list[str]]:
    """(lines, warnings): what will run, on what, and what the data predicts."""
    resumed = facts.resumed_step is not None
    out_dir = Path(cfg.out_dir)
    head = (
        f"resuming {out_dir}/ckpt.pt at step {facts.resumed_step:,}"
        if resumed
        else f"new run -> {out_dir}/"
    )
    lines = [
        f"{head} (preset {cfg.preset})",  # on resume, the checkpoint's (resume_config)
        f"device: {facts.device} x {facts.world_size} process(es)"
        + (f"; CPU threads: {facts.threads}" if facts.threads else ""),
        f"precision: {facts.dtype} — {facts.dtype_why}",
        f"compile: {facts.compile_why}",
        f"model: {model.arch}, {facts.params / 1e6:.2f} M parameters — {model.n_layer} layers, "
        f"{model.n_head} heads, width {model.n_embd}, context {model.block_size}, vocab "
        f"{model.vocab_size:,}"
        + (" (the checkpoint's)" if resumed else " (vocab from the tokenizer)"),
        f"batch: {cfg.batch_size} windows x {model.block_size} tokens x {cfg.grad_accum} accum x "
        f"{facts.world_size} process(es) = {facts.tokens_per_step:,} tokens/step; "
        + windows_text(cfg, facts),
        optimizer_text(cfg, facts),
    ]
    if cfg.max_steps == TrainConfig().max_steps:
        epochs = facts.tokens_per_step * cfg.max_steps / max(facts.train_tokens, 1)
        lines.append(
            f"steps: {cfg.max_steps:,} (default) = {epochs:.1f} epochs of this data: "
            + DEFAULT_STEPS_WHY
        )
    data_lines, warnings = _data_report(cfg, model, facts)
    return lines + data_lines, warnings


def _data_report(
    cfg: TrainConfig, model: ModelConfig, facts: RunFacts
) -> tuple[list[str], list[str]]:
    """The plan's data facts, the eval windows, changed settings, and the warnings."""
    lines, warnings = monitor.plan_report(
        params=facts.params,
        tokens_per_step=facts.tokens_per_step,
        max_steps=cfg.max_steps,
        train_tokens=facts.train_tokens,
        val_tokens=facts.val_tokens,
        block_size=model.block_size,
        max_minutes=cfg.max_minutes,
    )
    n_train, n_val = facts.eval_windows
    lines.append(
        f"eval: every {cfg.eval_interval} steps on {n_train} train / "
        f"{monitor.plural(n_val, 'val window')} (fixed; {facts.val_bytes:,} val bytes)"
    )
    if facts.changes:
        lines.append(f"changed from the checkpoint by flags: {'; '.join(facts.changes)}")
    if facts.resumed_step is not None and facts.checkpoint_world_size != facts.world_size:
        warnings.append(
            f"the checkpoint was trained with {facts.checkpoint_world_size} process(es), this "
            f"run has {facts.world_size}: it continues correctly, but draws different batches "
            "than an uninterrupted run"
        )
    return lines, warnings


def windows_text(cfg: TrainConfig, facts: RunFacts) -> str:
    """How training windows are drawn, and how many documents fit one whole."""
    fit = f" ({facts.documents_fit})" if facts.documents_fit else ""
    if cfg.windows == "documents":
        text = f"windows start at documents, short ones packed behind{fit}"
    else:
        text = f"windows anywhere in the token stream{fit}"
    if cfg.copy_warmup:
        drills = "random tokens shown twice, loss on the repeat: they teach copying"
        text = f"the first {cfg.copy_warmup:,} steps copying drills ({drills}), then {text}"
    if cfg.copy_share:
        text += f"; {cfg.copy_share * 100:g}% of the rows copying drills"
    return text


def optimizer_text(cfg: TrainConfig, facts: RunFacts) -> str:
    """The optimizer and its schedule, in one line."""
    floor = f"{cfg.min_lr_ratio:g}x at the end of the run"
    until = f"step {cfg.max_steps:,}"
    if cfg.max_minutes:
        until += f" or minute {cfg.max_minutes:g}, whichever comes first"
    if cfg.schedule == "wsd":
        shape = f"constant, then down to {floor} over its last {cfg.warmdown:.0%} ({until})"
    else:
        shape = f"cosine down to {floor} ({until})"
    if cfg.optimizer == "muon":
        name = f"Muon lr {cfg.muon_lr:g} on the blocks' matrices, AdamW lr {cfg.lr:g} on the rest"
        if cfg.embed_lr > 0 and not cfg.model.tied:
            name += f" ({cfg.embed_lr:g} on the token embedding)"
    else:
        name = f"AdamW lr {cfg.lr:g}"
    return (
        f"optimizer: {name}; warmup {warmup_text(cfg, facts)}, {shape}; weight decay "
        f"{cfg.weight_decay:g} on matrices; clip {cfg.grad_clip:g}"
    )


def warmup_text(cfg: TrainConfig, facts: RunFacts) -> str:
    """The warmup as used, and why it differs from --warmup-steps when it was capped."""
    if facts.warmup == cfg.warmup_steps:
        return str(facts.warmup)
    return (
        f"{facts.warmup} (--warmup-steps {cfg.warmup_steps} capped at "
        f"{facts.warmup_cap_percent}% of the {cfg.max_steps:,} steps, to reach the full lr)"
    )


# --- during and after the run ------------------------------------------------------------------


def copy_warmup_done_text(step: int) -> str:
    """The line that marks the end of the copying drills (`--copy-warmup`)."""
    return (
        f"copy warm-up done at step {step:,}: text from here on (the logged loss was the "
        "copying drills'; evals start now)"
    )


def kept_text(cfg: TrainConfig, saved_step: int) -> str:
    """Which checkpoint survives an abrupt end (-1: none yet), and how to go on from it."""
    if saved_step < 0:
        return "no checkpoint was written yet"
    return (
        f"{Path(cfg.out_dir)}/ckpt.pt from step {saved_step} is kept; continue with "
        f"`{train_command(cfg, '--resume')}`"
    )


def saved_text(cfg: TrainConfig, step: int) -> str:
    """After a stop request: where the run was saved and how to continue it."""
    return (
        f"saved {Path(cfg.out_dir)}/ckpt.pt at step {step}; continue with "
        f"`{train_command(cfg, '--resume')}`"
    )


def divergence_text(
    cfg: TrainConfig, value: float, step: int, saved_step: int, float16: bool
) -> tuple[str, str]:
    """(message, hint) for a loss that became `value` (NaN/inf) by `step`; saved_step -1: none."""
    kept = (
        f"{Path(cfg.out_dir)}/ckpt.pt from step {saved_step} is kept unchanged"
        if saved_step >= 0
        else "no checkpoint was written before it happened"
    )
    hint = (
        f"the usual cause is a learning rate too high for this model: retry with a lower "
        f"one, e.g. --lr {min(cfg.lr / 10, TrainConfig().lr):.1e}"
    )
    if saved_step >= 0:
        hint += " and --resume to continue from the kept checkpoint"
    hint += f"; keep gradient clipping on (--grad-clip 1.0; this run has {cfg.grad_clip:g})"
    if float16:
        hint += "; float16 overflows easily, try --dtype bfloat16 or float32"
    message = (
        f"training diverged: the loss became {value} by step {step} "
        f"(학습 발산, lr {cfg.lr:g}); {kept}"
    )
    return message, hint


def run_summary(
    cfg: TrainConfig,
    history: Sequence[dict[str, Any]],
    step: int,
    model: ModelConfig,
    stopped: str | None,
) -> dict[str, Any]:
    """The summary of a run at `step` that `stopped` why (None: its steps were done): its best
    and final losses, and the verdict (one line: what they mean and the command to run next)."""
    best = min(history, key=lambda h: h["val_loss"]) if history else None
    last = history[-1] if history else None
    finished = step >= cfg.max_steps
    more = ["--max-steps", str(2 * cfg.max_steps)] if finished else []
    verdict = monitor.summarize(
        history,
        vocab_size=model.vocab_size,
        lr=cfg.lr,
        diagnosis=monitor.diagnose(
            history,
            cfg.patience,
            cfg.lr,
            early_stop=cfg.early_stop,
            muon_lr=cfg.muon_lr if cfg.optimizer == "muon" else None,
        ),
        best_command=command("generate", "--checkpoint", Path(cfg.out_dir) / "best.pt"),
        more_steps_command=train_command(cfg, "--resume", *more),
    )
    return {
        "step": step,
        "stopped": stopped or ("max_steps" if finished else "steps"),
        "best_step": best["step"] if best else None,
        "best_val_loss": best["val_loss"] if best else None,
        "final_train_loss": last["train_loss"] if last else None,
        "final_val_loss": last["val_loss"] if last else None,
        "summary": verdict,
    }


def final_line(summary: dict[str, Any], out_dir: str | Path, finished_before: bool) -> str:
    """The one line `jobgpt train` prints to stdout; `finished_before`: the run had already
    reached max_steps when this invocation began."""
    finished = ""
    if finished_before:  # the full command is in the verdict when more steps would help
        finished = (
            f"this run already finished at step {summary['step']:,}; pass a larger "
            f"--max-steps with --resume to continue (e.g. --resume --max-steps "
            f"{2 * summary['step']}). Its verdict: "
        )
    return (
        f"train: step {summary['step']:,} — {finished}{summary['summary']} "
        f"(checkpoints in {Path(out_dir)}/)"
    )


# More micro-batches per step than this and a run crawls: suggest a smaller batch instead.
MAX_ACCUM = 64


def oom_text(
    cfg: TrainConfig, error: str, gpu: bool, free_bytes: int | None = None
) -> tuple[str, str]:
    """(message, hint) for running out of memory with `error` as the allocator said it; `gpu`:
    whether a CUDA GPU is there; `free_bytes`: the memory the device has (None: unknown).

    The fix keeps the effective batch (batch_size / k with grad_accum * k) at a micro-batch that
    the estimated activation memory says fits; where that would take more than MAX_ACCUM
    micro-batches per step, the batch itself is too big for this model, and the hint says so.
    """
    b, a = cfg.batch_size, cfg.grad_accum
    fits = b // 2
    if free_bytes:
        fits = min(fits, int(free_bytes * 0.6 // window_bytes(cfg)))
    smaller = max([d for d in range(1, max(fits, 1) + 1) if b % d == 0] or [1])
    if "cpuallocator" in error.lower() or cfg.device == "cpu":
        where = "the CPU (RAM)"
    elif "cuda" in str(cfg.device) or gpu:
        where = "the GPU"
    else:
        where = "the device"
    block = f"a shorter --block-size (now {cfg.model.block_size})"
    if b == 1:
        hint = (
            f"already at --batch-size 1: use {block} or a smaller model (--n-embd, --n-layer),"
            " or --dtype bfloat16"
        )
    elif a * b // smaller > MAX_ACCUM:
        fit = max(fits, 1)
        hint = (
            f"use --batch-size {fit}: about that many windows of {cfg.model.block_size} tokens "
            f"fit in memory for this model, and a batch of {a * b:,} windows per step is far "
            f"more than it needs (the reference run uses {TrainConfig().batch_size}); or {block}"
        )
    else:
        hint = (
            f"use --batch-size {smaller} --grad-accum {a * b // smaller}: the same effective "
            f"batch of {a * b} windows per step, in smaller pieces (add --resume to continue "
            f"from the last checkpoint, if any); or {block}"
        )
    message = (
        f"out of memory on {where} with --batch-size {b} --grad-accum {a} "
        f"({error.splitlines()[0][:120]})"
    )
    return message, hint


def window_bytes(cfg: TrainConfig) -> int:
    """A rough upper estimate of the training memory one window takes, in float32: the logits,
    their softmax and gradient (3 x block x vocab), and ~16 activations of the width per layer
    and token kept for the backward pass."""
    m = cfg.model
    return 4 * m.block_size * (3 * m.vocab_size + 16 * m.n_layer * m.n_embd)


def split_changed_text(
    cfg: TrainConfig, saved: dict[str, Any], ours: dict[str, Any], step: int
) -> str:
    """Why a resumed run's val history starts again: its bins are not the checkpoint's."""
    keys = ("train_tokens", "val_tokens")
    now = "/".join(f"{ours[k]:,}" for k in keys)
    was = "/".join(f"{saved.get(k, 0):,}" for k in keys)
    return (
        f"{cfg.data_dir} holds other bins than the checkpoint was trained on (train/val tokens "
        f"{now}, were {was}): val losses before and after would not compare, so the val history "
        f"(and which checkpoint is best.pt) starts again at step {step}"
    )
