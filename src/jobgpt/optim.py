"""The optimizer and its learning-rate schedule: AdamW, linear warmup, cosine decay.

Pure functions of the training config and the step, so that a resumed run follows exactly the
schedule an uninterrupted one would, and a checkpoint can record it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from jobgpt.config import TrainConfig

# Warmup lets AdamW's moment estimates settle before the full step size; it is capped at this
# percentage of the run, so a short run (--max-steps 20 with the default warmup 100) still reaches
# its --lr and spends most of its steps near it rather than warming up until the end.
MAX_WARMUP_PERCENT = 20  # integer arithmetic: the cap is exact


def warmup_steps(cfg: TrainConfig) -> int:
    """--warmup-steps, capped at MAX_WARMUP_PERCENT % of --max-steps. A pure function of the
    config, so a resumed run follows the same schedule."""
    return min(cfg.warmup_steps, cfg.max_steps * MAX_WARMUP_PERCENT // 100)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.lr * min_lr_ratio at max_steps."""
    warmup = warmup_steps(cfg)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    span = max(cfg.max_steps - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * progress))


def schedule_record(cfg: TrainConfig, step: int) -> dict[str, float]:
    """The LR schedule for a checkpoint: a pure function of the step and these settings."""
    return {
        "lr": cfg.lr,
        "warmup_steps": warmup_steps(cfg),  # as used: capped (train_config: as asked)
        "max_steps": cfg.max_steps,
        "min_lr_ratio": cfg.min_lr_ratio,
        "current_lr": lr_at(step, cfg),
    }


def make_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW that decays weight matrices (and embeddings) only: decaying LayerNorm gains or
    biases pulls them toward 0, which fights normalisation instead of regularising."""
    params = [p for p in model.parameters() if p.requires_grad]  # the tied head counted once
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # Fused (one kernel for all parameters) on CUDA. Elsewhere leave the choice to torch: an
    # explicit fused=False would also switch off its faster multi-tensor ("foreach") path.
    fused = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **fused)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Moments and step counts from a checkpoint; this run's hyperparameters (lr, betas, weight
    decay) stay, as a checkpoint's saved ones would override this run's flags."""
    ours = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, settings in zip(optimizer.param_groups, ours, strict=True):
        group.update(settings)
