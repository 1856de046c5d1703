"""The rules a stage's settings must follow, each failing with the flag's name and the fix.

`jobgpt.config` applies them when a config is built; the sampling loop applies the
per-request ones (`check_sampling`, `check_generation`) to values that never pass through a
config.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from jobgpt.commands import command
from jobgpt.errors import ConfigError

# Bounds of one generation call. A posting is ~500 tokens; 10,000 new tokens take minutes on a
# CPU already, and 1e9 would run for days without a word. Samples run as one batch in memory.
MAX_NEW_TOKENS = 10_000
MAX_SAMPLES = 64

# The choices of the settings that name a method
ARCHS = ("gpt", "modern")  # jobgpt.model.GPT, jobgpt.modern.ModernGPT
OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("cosine", "wsd")
WINDOWS = ("random", "documents")


def require(ok: bool, message: str, hint: str) -> None:
    """A ConfigError(message, hint) unless `ok`."""
    if not ok:
        raise ConfigError(message, hint)


def at_least_1(**values: int) -> None:
    """Each named flag's value is a positive whole number."""
    for name, value in values.items():
        require(
            value >= 1,
            f"--{name.replace('_', '-')} must be at least 1, got {value}",
            "pass a positive whole number",
        )


def at_least_0(**values: float) -> None:
    """Each named flag's value is zero or more."""
    for name, value in values.items():
        flag = f"--{name.replace('_', '-')}"
        require(value >= 0, f"{flag} must be >= 0, got {value}", f"use {flag} 0 or more")


def one_of(flag: str, value: str, choices: Sequence[str]) -> None:
    """`--flag` is one of `choices`: "--optimizer must be adamw or muon, not 'sgd'"."""
    names = " or ".join(filter(None, (", ".join(choices[:-1]), choices[-1])))
    require(
        value in choices, f"--{flag} must be {names}, not {value!r}", f"e.g. --{flag} {choices[0]}"
    )


def check_heads(n_embd: int, n_head: int) -> None:
    """Each head attends in n_embd / n_head channels, so the width must split evenly."""
    if n_embd % n_head == 0:
        return
    divisors = [d for d in range(1, n_embd + 1) if n_embd % d == 0]
    below = [d for d in divisors if d < n_head][-1:]
    above = [d for d in divisors if d > n_head][:1]
    heads = " or ".join(str(d) for d in below + above)
    widths = sorted({max(n_head, n_embd // n_head * n_head), (n_embd // n_head + 1) * n_head})
    raise ConfigError(
        f"--n-embd {n_embd} is not divisible by --n-head {n_head}: each attention head gets "
        "n_embd / n_head channels",
        f"use --n-head {heads} (divisors of {n_embd} near {n_head}), or keep {n_head} heads with "
        f"--n-embd {' or '.join(str(w) for w in widths)}",
    )


def check_sampling(temperature: float, top_k: int, top_p: float, repetition_penalty: float) -> None:
    """Raise a ConfigError naming the flag when a sampling setting is out of range."""
    require(
        temperature >= 0,
        f"--temperature {temperature} is negative",
        "use 0 for greedy decoding, or a positive value such as 0.8",
    )
    require(top_k >= 0, f"--top-k {top_k} is negative", "use 0 (off) or a positive k, e.g. 50")
    require(
        0 < top_p <= 1,
        f"--top-p {top_p} is outside (0, 1]",
        "use 1.0 (off) or a share such as 0.95",
    )
    require(
        repetition_penalty >= 1,
        f"--repetition-penalty {repetition_penalty} is below 1 (it would reward repeats)",
        "use 1.0 (off) or a value slightly above, such as 1.1",
    )


def check_generation(num_samples: int, max_new_tokens: int, stop: Sequence[str]) -> None:
    """The batch and length of one generation call: bounded, so a typo cannot run for hours."""
    require(num_samples >= 1, f"--num-samples {num_samples} is below 1", "draw at least one sample")
    require(
        1 <= max_new_tokens <= MAX_NEW_TOKENS,
        f"--max-new-tokens {max_new_tokens} is outside 1..{MAX_NEW_TOKENS:,}",
        "a posting is ~500 tokens: ask for e.g. 200, or up to a few thousand",
    )
    require(
        num_samples <= MAX_SAMPLES,
        f"--num-samples {num_samples} is more than {MAX_SAMPLES}",
        f"draw at most {MAX_SAMPLES} at once (one batch), or call again with another --seed",
    )
    require(all(stop), "--stop got an empty string", "give non-empty stop strings")


class Checked:
    """A stage config that checks itself when built (and when `dataclasses.replace` rebuilds it):
    every float must be a finite number (`--lr nan` would train on NaN), then `check()` applies
    the stage's own rules."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]  # subclasses are dataclasses
            value = getattr(self, f.name)
            require(
                not isinstance(value, float) or math.isfinite(value),
                f"--{f.name.replace('_', '-')} must be a finite number, got {value}",
                "pass an ordinary number (see --help for the range)",
            )
        self.check()

    def check(self) -> None:
        """The stage's own rules; raise ConfigError naming the flag and the fix."""


def check_model(cfg: Any) -> None:
    """ModelConfig's rules (`cfg` is one)."""
    at_least_1(
        vocab_size=cfg.vocab_size,
        block_size=cfg.block_size,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_embd=cfg.n_embd,
    )
    check_heads(cfg.n_embd, cfg.n_head)
    one_of("arch", cfg.arch, ARCHS)
    require(cfg.rope_theta > 0, f"--rope-theta must be > 0, got {cfg.rope_theta}", "use 10000")
    require(
        cfg.arch == "modern" or cfg.tied_head is not False,
        "--no-tied-head is for --arch modern: the reference GPT-2 always ties its head",
        "drop --no-tied-head, or add --arch modern",
    )
    require(
        0 <= cfg.dropout < 1,
        f"--dropout must be in [0, 1), got {cfg.dropout}",
        "use 0 (the default) or e.g. 0.1",
    )


def check_training(cfg: Any) -> None:
    """TrainConfig's rules (`cfg` is one)."""
    at_least_1(
        batch_size=cfg.batch_size,
        grad_accum=cfg.grad_accum,
        max_steps=cfg.max_steps,
        eval_interval=cfg.eval_interval,
        eval_windows=cfg.eval_windows,
    )
    at_least_0(
        warmup_steps=cfg.warmup_steps,
        max_minutes=cfg.max_minutes,
        grad_clip=cfg.grad_clip,
        weight_decay=cfg.weight_decay,
        embed_lr=cfg.embed_lr,
        copy_warmup=cfg.copy_warmup,
        log_interval=cfg.log_interval,
        threads=cfg.threads,
    )
    checks = [
        (
            cfg.lr > 0 and math.isfinite(cfg.lr),
            f"--lr must be a positive number, got {cfg.lr}",
        ),
        (
            0 <= cfg.min_lr_ratio <= 1,
            f"--min-lr-ratio must be in [0, 1], got {cfg.min_lr_ratio}",
        ),
        (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1, "--beta1 and --beta2 must be in [0, 1)"),
        (cfg.muon_lr > 0, f"--muon-lr must be a positive number, got {cfg.muon_lr}"),
        (0 <= cfg.warmdown <= 1, f"--warmdown must be in [0, 1], got {cfg.warmdown}"),
        (0 <= cfg.copy_share < 1, f"--copy-share must be in [0, 1), got {cfg.copy_share}"),
        (
            cfg.copy_warmup < cfg.max_steps,
            f"--copy-warmup ({cfg.copy_warmup}) must be below --max-steps ({cfg.max_steps}): "
            "the drills only prepare the model for the text steps after them",
        ),
        (
            not (cfg.resume and cfg.overwrite),
            "--resume and --overwrite contradict each other",
        ),
    ]
    for ok, message in checks:
        require(ok, message, f"fix the flag's value (see `{command('train', '--help')}`)")
    one_of("optimizer", cfg.optimizer, OPTIMIZERS)
    one_of("schedule", cfg.schedule, SCHEDULES)
    one_of("windows", cfg.windows, WINDOWS)
    one_of("compile", cfg.compile, ("auto", "on", "off"))
