"""The optimizers and their learning-rate schedules.

Optimizers: AdamW for everything (the reference), or Muon for the transformer blocks' weight
matrices with AdamW for the rest (`--optimizer muon`). Schedules: linear warmup, then cosine decay
(the reference) or warmup-stable-decay (`--schedule wsd`). Schedules are pure functions of the
config, the step and the share of the time budget used, so a resumed run follows the schedule an
uninterrupted one would, and a checkpoint can record it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from jobgpt.config import TrainConfig
from jobgpt.errors import CheckpointError

# Warmup lets AdamW's moment estimates settle before the full step size; it is capped at this
# percentage of the run, so a short run (--max-steps 20 with the default warmup 100) still reaches
# its --lr and spends most of its steps near it rather than warming up until the end.
MAX_WARMUP_PERCENT = 20  # integer arithmetic: the cap is exact

# Muon's momentum starts lower while the gradients change fast, and ends at the usual 0.95.
MUON_MOMENTUM_START = 0.85
MUON_MOMENTUM_END = 0.95
MUON_MOMENTUM_WARMUP = 300  # steps

# The quintic Newton–Schulz iteration of Muon: p(x) = a x + b x^3 + c x^5 applied to the singular
# values. Its coefficients trade exactness for speed: five steps push every singular value above
# 0.15% of the matrix's Frobenius norm into [0.68, 1.21] instead of converging slowly to exactly 1.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5

ADAMW_EPS = 1e-8


# --- the schedule --------------------------------------------------------------------------------


def warmup_steps(cfg: TrainConfig) -> int:
    """--warmup-steps, capped at MAX_WARMUP_PERCENT % of --max-steps. A pure function of the
    config, so a resumed run follows the same schedule."""
    return min(cfg.warmup_steps, cfg.max_steps * MAX_WARMUP_PERCENT // 100)


def lr_factor(step: int, cfg: TrainConfig, time_used: float = 0.0) -> float:
    """The multiplier of each group's peak lr at `step`: linear warmup, then cosine decay or
    wsd (constant, then a linear warmdown over the last `cfg.warmdown` of the run), down to
    cfg.min_lr_ratio.

    The run's progress is counted in steps: the step itself, or `time_used` (the share of
    --max-minutes spent, 0 to 1) times max_steps if that is further. A time-limited run thus
    reaches the floor when its minutes run out; a step-limited one when its steps do.
    """
    warmup = warmup_steps(cfg)
    if step < warmup:
        return (step + 1) / warmup
    done = min(max(step, time_used * cfg.max_steps), cfg.max_steps)  # progress, in steps
    if cfg.schedule == "wsd":
        # The warmdown never starts before the warmup has ended, so the lr never jumps down.
        start = max((1.0 - cfg.warmdown) * cfg.max_steps, warmup)
        if done <= start:
            return 1.0
        remaining = (cfg.max_steps - done) / (cfg.max_steps - start)
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * remaining
    progress = (done - warmup) / max(cfg.max_steps - warmup, 1)
    return cfg.min_lr_ratio + 0.5 * (1.0 - cfg.min_lr_ratio) * (1.0 + math.cos(math.pi * progress))


def lr_at(step: int, cfg: TrainConfig, time_used: float = 0.0) -> float:
    """The AdamW learning rate at `step` (what the logs show): cfg.lr times `lr_factor`."""
    return cfg.lr * lr_factor(step, cfg, time_used)


def muon_momentum(step: int) -> float:
    """Muon's momentum at `step`: MUON_MOMENTUM_START rising linearly to MUON_MOMENTUM_END."""
    share = min(step / MUON_MOMENTUM_WARMUP, 1.0)
    return MUON_MOMENTUM_START + share * (MUON_MOMENTUM_END - MUON_MOMENTUM_START)


def apply_schedule(
    optimizer: torch.optim.Optimizer, step: int, cfg: TrainConfig, time_used: float = 0.0
) -> float:
    """Set every group's lr (its peak_lr times the schedule's factor) and the Muon groups'
    momentum for `step`; return the factor. Call before each optimizer step."""
    factor = lr_factor(step, cfg, time_used)
    for group in optimizer.param_groups:
        group["lr"] = group["peak_lr"] * factor
        if group.get("kind") == "muon":
            group["momentum"] = muon_momentum(step)
    return factor


def schedule_record(cfg: TrainConfig, step: int, time_used: float = 0.0) -> dict[str, Any]:
    """The LR schedule for a checkpoint: a pure function of the step and these settings."""
    return {
        "lr": cfg.lr,
        "warmup_steps": warmup_steps(cfg),  # as used: capped (train_config: as asked)
        "max_steps": cfg.max_steps,
        "min_lr_ratio": cfg.min_lr_ratio,
        "current_lr": lr_at(step, cfg, time_used),
        "schedule": cfg.schedule,
        "warmdown": cfg.warmdown,
        "optimizer": cfg.optimizer,
        "muon_lr": cfg.muon_lr,
    }


# --- Muon ----------------------------------------------------------------------------------------


def newton_schulz(
    grad: torch.Tensor, steps: int = NS_STEPS, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """An approximately orthogonal matrix with the singular vectors of `grad` (rows x cols): its
    singular values are all pushed near 1, so every direction of the update moves equally.

    `dtype`: the trainer passes the dtype it computes in. The iteration is only matmuls and needs
    the singular values in a band, not exact, so bfloat16 is enough where the chip has it
    natively (CUDA; CPUs with AMX or AVX512-BF16: the Muon step took 0.18 s instead of 0.54 s at
    the reference size on such a CPU); float32 everywhere else, and in the exactness tests.
    """
    a, b, c = NS_COEFFICIENTS
    x = grad.to(dtype)  # (rows, cols), or a stack (n, rows, cols) of same-shaped matrices
    tall = x.size(-2) > x.size(-1)
    if tall:  # iterate on the wide side: x @ x.T is then the smaller of the two Gram matrices
        x = x.mT
    # The Frobenius norm bounds the largest singular value, so after this all lie in [0, 1],
    # where the polynomial pushes them up toward 1 (the epsilon guards a zero gradient).
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x  # p(x) on every singular value at once
    return x.mT if tall else x


class Muon(torch.optim.Optimizer):
    """Muon for the blocks' weight matrices, AdamW for everything else, as one optimizer (so
    GradScaler, state_dict and zero_grad treat it as any other).

    Every group has a "kind": "muon" (lr, momentum, weight_decay) or "adamw" (lr, betas,
    weight_decay), and a "peak_lr" that `apply_schedule` scales.

    Under DDP, gradients are already averaged across ranks when step() runs, so every rank
    computes the same update from the same numbers: no extra communication is needed.
    """

    def __init__(self, groups: list[dict[str, Any]], dtype: torch.dtype = torch.float32) -> None:
        super().__init__(groups, {"weight_decay": 0.0})
        self.dtype = dtype  # of the Newton–Schulz iteration (see `newton_schulz`)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["kind"] == "muon":
                self._muon_step(group)
            else:
                self._adamw_step(group)
        return loss

    def _muon_step(self, group: dict[str, Any]) -> None:
        """Nesterov momentum, orthogonalised, scaled so tall matrices move as much as wide.
        Matrices of one shape (a block's q, k, v and o; its gate and up) are orthogonalised as
        one stack: a few large matmuls instead of many small ones. At the reference size the
        iteration is ~100 GFLOP per step: 0.19 s in bf16 on 2 CPU cores (0.62 s in float32),
        ~12% of a training step."""
        momentum, lr = group["momentum"], group["lr"]
        by_shape: dict[torch.Size, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            buf.mul_(momentum).add_(p.grad)
            update = p.grad.add(buf, alpha=momentum)  # Nesterov: look one step ahead
            by_shape.setdefault(p.shape, []).append((p, update))
        for (rows, cols), pairs in by_shape.items():
            ortho = newton_schulz(torch.stack([u for _, u in pairs]), dtype=self.dtype)
            # An orthogonal rows x cols matrix has entries of RMS 1/sqrt(max(rows, cols)); this
            # factor makes that 1/sqrt(cols) for tall matrices as for wide ones.
            scale = max(1.0, rows / cols) ** 0.5
            for (p, _), step in zip(pairs, ortho, strict=True):
                if group["weight_decay"]:
                    p.mul_(1.0 - lr * group["weight_decay"])
                p.add_(step.to(p.dtype), alpha=-lr * scale)

    def _adamw_step(self, group: dict[str, Any]) -> None:
        """AdamW as torch.optim.AdamW computes it, one tensor at a time."""
        (beta1, beta2), lr = group["betas"], group["lr"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            mean, square = state["exp_avg"], state["exp_avg_sq"]
            mean.lerp_(p.grad, 1.0 - beta1)
            square.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
            # Bias corrections: both averages start at zero and underestimate early on.
            correction1 = 1.0 - beta1 ** state["step"]
            correction2 = 1.0 - beta2 ** state["step"]
            p.mul_(1.0 - lr * group["weight_decay"])  # decoupled: not part of the gradient
            denom = (square.sqrt() / math.sqrt(correction2)).add_(ADAMW_EPS)
            p.addcdiv_(mean, denom, value=-lr / correction1)


# --- building and restoring ----------------------------------------------------------------------


def is_muon_matrix(name: str, p: torch.Tensor) -> bool:
    """The blocks' weight matrices. Embeddings and the head stay on AdamW: their rows are
    looked up (or scored) one token at a time, not used as one linear map."""
    return name.startswith("blocks.") and p.dim() == 2


def muon_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Muon's param groups: the blocks' matrices, then AdamW with and without weight decay."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # tied head once
    embedding = _own_lr_embedding(model, cfg)
    rest = [p for n, p in named if not is_muon_matrix(n, p) and p is not embedding]
    adamw = {"kind": "adamw", "peak_lr": cfg.lr, "lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2)}
    groups = [
        # No weight decay on Muon's matrices by default: its updates have a fixed size, so the
        # weights' norm grows only slowly, and the short runs here need no pull toward zero.
        {
            "kind": "muon",
            "params": [p for n, p in named if is_muon_matrix(n, p)],
            "peak_lr": cfg.muon_lr,
            "lr": cfg.muon_lr,
            "momentum": muon_momentum(0),
            "weight_decay": 0.0,
        },
        {**adamw, "params": [p for p in rest if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {**adamw, "params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0},
    ]
    if embedding is not None:
        lr = {"peak_lr": cfg.embed_lr, "lr": cfg.embed_lr}
        groups.append({**adamw, **lr, "params": [embedding], "weight_decay": cfg.weight_decay})
    return [g for g in groups if g["params"]]


def _own_lr_embedding(model: torch.nn.Module, cfg: TrainConfig) -> torch.Tensor | None:
    """The token embedding when --embed-lr gives it its own learning rate: an untied embedding
    is only looked up, one row per token, so its rows see few updates and take a far larger
    lr than the head (nanochat trains its embedding at ~50x its head's lr). A tied one is the
    head too, and keeps --lr."""
    emb = getattr(model, "tok_emb", None)
    head = getattr(model, "head", None)
    if cfg.embed_lr <= 0 or emb is None or (head is not None and head.weight is emb.weight):
        return None
    return emb.weight


def make_optimizer(
    model: torch.nn.Module,
    cfg: TrainConfig,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.optim.Optimizer:
    """The optimizer --optimizer names: AdamW (the reference) or Muon (with AdamW inside);
    `dtype`: the trainer's compute dtype, which Muon's orthogonalisation uses when it is bf16."""
    if cfg.optimizer == "muon":
        ns_dtype = torch.bfloat16 if dtype == torch.bfloat16 else torch.float32
        return Muon(muon_groups(model, cfg), ns_dtype)
    return make_adamw(model, cfg, device)


def make_adamw(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW that decays weight matrices (and embeddings) only: decaying LayerNorm gains or
    biases pulls them toward 0, which fights normalisation instead of regularising."""
    params = [p for p in model.parameters() if p.requires_grad]  # the tied head counted once
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    for group in groups:
        group["peak_lr"] = cfg.lr  # what apply_schedule scales
    # Fused (one kernel for all parameters) on CUDA. Elsewhere leave the choice to torch: an
    # explicit fused=False would also switch off its faster multi-tensor ("foreach") path.
    fused = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **fused)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Moments, momentum buffers and step counts from a checkpoint; this run's hyperparameters
    (lr, peak_lr, betas, weight decay, momentum) stay, as a checkpoint's saved ones would
    override this run's flags."""
    if group_kinds(state["param_groups"]) != group_kinds(optimizer.param_groups):
        raise CheckpointError(
            "the checkpoint's optimizer state has other parameter groups than this run's "
            "(another --optimizer, or --embed-lr set in one and not the other)",
            "resume with the --optimizer and --embed-lr it was trained with (its train_config "
            "says which)",
        )
    ours = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, settings in zip(optimizer.param_groups, ours, strict=True):
        group.update(settings)


def group_kinds(groups: list[dict[str, Any]]) -> list[str]:
    """Each group's kind; torch's AdamW groups have none and count as "adamw"."""
    return [group.get("kind", "adamw") for group in groups]
