"""Stage 3: train the GPT on the token bins (data/*.bin -> checkpoints/ckpt.pt, best.pt).

The loop, top to bottom: pick the device and precision, open the data, build the model and AdamW,
then repeat `train_step` (gradient accumulation, clipping, warmup + cosine LR); every
`eval_interval` steps measure train/val loss on fixed windows, write metrics.jsonl and loss.png,
save ckpt.pt (and best.pt when val improved), and let `jobgpt.monitor` say whether the run
overfits or stalls. Ctrl-C, SIGTERM and the time budget stop it cleanly, saved (after Ctrl-C
the command exits with status 130, as interrupted commands do); `--resume` continues bit for bit.

Multi-GPU and multi-node runs go through torchrun, e.g.
`torchrun --standalone --nproc_per_node=8 scripts/train_gpt.py [flags]`: each process trains on
its own slice of one global batch (NCCL on GPUs, gloo on CPUs), DDP averages the gradients, rank
0 alone logs and writes files. `--resume` works the same way.

`Trainer` is the reusable piece: `Trainer(cfg)` builds (or resumes) a run, `train_step()` takes
one optimizer step, `evaluate()` measures the fixed windows, `save()` writes a checkpoint and
`fit()` runs the loop with all of the above. `run(cfg)` is the `jobgpt train` stage.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from jobgpt import checkpoint as ckpt_io
from jobgpt import monitor
from jobgpt.bins import TokenBins, load_meta
from jobgpt.commands import command
from jobgpt.config import TrainConfig
from jobgpt.errors import ConfigError, DataError, JobGPTError
from jobgpt.model import GPT
from jobgpt.runtime import autocast_context, choose_dtype, keep_freed_memory, resolve_device
from jobgpt.tokenizer import tokenizer_sha256

logger = logging.getLogger(__name__)

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
# Warmup lets AdamW's moment estimates settle before the full step size; it is capped at this
# percentage of the run, so a short run (--max-steps 20 with the default warmup 100) still reaches
# its --lr and spends most of its steps near it rather than warming up until the end.
MAX_WARMUP_PERCENT = 20  # integer arithmetic: the cap is exact
# uv (and other wrappers without a terminal) forward the Ctrl-C that the child also receives:
# a second SIGINT this soon after the first is the same keypress, not a request to quit at once.
SAME_INTERRUPT_S = 2.0


class TrainingDiverged(JobGPTError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


# --- distribution ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 when run on its own)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_spec: str) -> tuple[Dist, torch.device]:
    """Join the torchrun job if there is one (NCCL on GPUs, gloo on the CPU); pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_spec)
    if world_size == 1:
        return Dist(), device
    import torch.distributed as dist

    if device.type == "mps":
        raise ConfigError(
            "multi-process training (torchrun) needs CUDA GPUs or the CPU, not Apple MPS",
            "run without torchrun on a Mac, or add --device cpu",
        )
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size()), device


# --- optimisation ------------------------------------------------------------------------------


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


def make_optimizer(model: GPT, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
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


# --- the trainer -------------------------------------------------------------------------------


class Trainer:
    """One training run. `__init__` builds everything (and loads the checkpoint on --resume);
    `fit()` runs the loop; `train_step()`, `evaluate()` and `save()` are its pieces, public so
    benchmarks and tests can drive them one at a time."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.dist, self.device = init_distributed(cfg.device)
        if not self.dist.is_main:  # one voice: only rank 0 reports
            logging.getLogger("jobgpt").setLevel(logging.ERROR)
        resume_from = ckpt_io.find_resume_checkpoint(cfg)
        changes: list[str] = []
        if resume_from is not None:
            changes = ckpt_io.resume_changes(cfg, resume_from)
        self.cfg = cfg
        self.out_dir = Path(cfg.out_dir)
        self._open_data(resume_from)
        self.dtype, self.dtype_why = choose_dtype(self.device, cfg.dtype)
        self._build_model()
        # Progress; a checkpoint overwrites all of it in load_state_dict.
        self.step = 0
        self.tokens_seen = 0
        self.elapsed_before = 0.0  # training time of earlier sessions of this run
        self.history: list[dict[str, Any]] = []  # one {"step", "train_loss", "val_loss"} per eval
        if resume_from is not None:
            self.load_state_dict(resume_from)
        self.model, self.compile_why = self._wrap(self.raw_model)
        self.metrics = monitor.MetricsLog(self.out_dir / "metrics.jsonl")
        if self.dist.is_main:
            self._start_files(resumed=resume_from is not None)
        self._diverged = torch.zeros((), dtype=torch.bool, device=self.device)
        self._saved_step = self.step if resume_from is not None else -1
        self._last_diagnosis: str | None = None
        self._report(resume_from, changes)

    # --- setup helpers ---

    def _open_data(self, resume_from: dict[str, Any] | None) -> None:
        """Bins, tokenizer, the model's config (vocab from the tokenizer), fixed eval windows."""
        cfg = self.cfg
        self.bins, self.tokenizer = open_data(cfg.data_dir)
        self.tokenizer_sha256 = tokenizer_sha256(self.tokenizer)
        if resume_from is not None:
            ckpt_io.check_tokenizer_match(
                resume_from, self.tokenizer_sha256, self.bins.vocab_size, cfg.data_dir
            )
        self.model_config = replace(cfg.model, vocab_size=self.bins.vocab_size)
        block = self.model_config.block_size
        self.bins.check_block_size(block)
        self.tokens_per_step = cfg.batch_size * cfg.grad_accum * block * self.dist.world_size
        self.eval_sets = {  # split -> (x, y): the same windows at every eval
            split: self.bins.windows(
                split, self.bins.eval_starts(split, block, cfg.eval_windows), block
            )
            for split in ("train", "val")
        }
        self.val_bytes = target_bytes(self.tokenizer, self.eval_sets["val"][1])

    def _build_model(self) -> None:
        """Model, optimizer and loss scaler. Model init and dropout draw from torch's generator
        (seeded per rank: different dropout masks); batches from `sampler`, seeded alike on every
        rank, so all draw the same global batch and each takes its own slice."""
        torch.manual_seed(self.cfg.seed + self.dist.rank)
        self.sampler = np.random.default_rng(self.cfg.seed)
        self.raw_model = GPT(self.model_config).to(self.device)
        self.optimizer = make_optimizer(self.raw_model, self.cfg, self.device)
        # float16 needs its gradients scaled up (then back down) not to underflow to zero.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    def _wrap(self, model: GPT) -> tuple[torch.nn.Module, str]:
        """torch.compile (if chosen), then DDP (if distributed) around the raw model."""
        cfg, wrapped = self.cfg, model
        if cfg.compile == "auto":
            use = self.device.type == "cuda"
            why = (
                "auto: on for CUDA"
                if use
                else (
                    f"auto: off on {self.device.type}; compiling costs more than it saves on short "
                    "runs here (--compile on to try)"
                )
            )
        else:
            use, why = cfg.compile == "on", f"--compile {cfg.compile}"
        if use:
            wrapped = torch.compile(wrapped)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = DDP(wrapped, device_ids=ids)
        return wrapped, f"{'on' if use else 'off'} ({why})"

    def _start_files(self, resumed: bool) -> None:
        """A new run starts clean files; a resumed one drops records past its checkpoint."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not resumed:  # --overwrite (or an empty dir): nothing of an old run may linger
            for name in ("ckpt.pt", "best.pt", "loss.png"):
                (self.out_dir / name).unlink(missing_ok=True)
        self.metrics.reset(keep_through_step=self.step if resumed else None)

    def _report(self, resume_from: dict[str, Any] | None, changes: list[str]) -> None:
        """The start-up report: what will run, on what, and what the data predicts."""
        cfg, m = self.cfg, self.model_config
        params = self.raw_model.num_params()
        where = self.device.type
        if where == "cuda":
            where = f"cuda ({torch.cuda.get_device_name(self.device)})"
        elif where == "cpu":
            where = f"cpu ({monitor.plural(torch.get_num_threads(), 'thread')})"
        dtype = str(self.dtype).removeprefix("torch.")
        head = (
            f"resuming {self.out_dir}/ckpt.pt at step {self.step:,}"
            if resume_from
            else f"new run -> {self.out_dir}/"
        )
        lines = [
            f"{head} (preset {cfg.preset})",  # on resume, the checkpoint's (resume_config)
            f"device: {where} x {self.dist.world_size} process(es)",
            f"precision: {dtype} — {self.dtype_why}",
            f"compile: {self.compile_why}",
            f"model: {params / 1e6:.2f} M parameters — {m.n_layer} layers, {m.n_head} heads, "
            f"width {m.n_embd}, context {m.block_size}, vocab {m.vocab_size:,}"
            + (" (the checkpoint's)" if resume_from else " (vocab from the tokenizer)"),
            f"batch: {cfg.batch_size} windows x {m.block_size} tokens x {cfg.grad_accum} accum x "
            f"{self.dist.world_size} process(es) = {self.tokens_per_step:,} tokens/step",
            f"optimizer: AdamW lr {cfg.lr:g}, warmup {self._warmup_text()}, cosine to "
            f"{cfg.lr * cfg.min_lr_ratio:g} at step {cfg.max_steps:,}; weight decay "
            f"{cfg.weight_decay:g} on matrices; clip {cfg.grad_clip:g}",
        ]
        if cfg.max_steps == TrainConfig().max_steps:
            epochs = self.tokens_per_step * cfg.max_steps / max(len(self.bins.tokens["train"]), 1)
            lines.append(
                f"steps: {cfg.max_steps:,} (default) = {epochs:.1f} epochs of this data: "
                + DEFAULT_STEPS_WHY
            )
        facts, warnings = monitor.plan_report(
            params=params,
            tokens_per_step=self.tokens_per_step,
            max_steps=cfg.max_steps,
            train_tokens=len(self.bins.tokens["train"]),
            val_tokens=len(self.bins.tokens["val"]),
            block_size=m.block_size,
        )
        lines += facts
        n_train, n_val = (len(self.eval_sets[split][0]) for split in ("train", "val"))
        lines.append(
            f"eval: every {cfg.eval_interval} steps on {n_train} train / "
            f"{monitor.plural(n_val, 'val window')} (fixed; {self.val_bytes:,} val bytes)"
        )
        if changes:
            lines.append(f"changed from the checkpoint by flags: {'; '.join(changes)}")
        logger.info("jobgpt train\n  %s", "\n  ".join(lines))
        for warning in warnings:
            logger.warning("warning: %s", warning)
        if resume_from and resume_from.get("world_size", 1) != self.dist.world_size:
            logger.warning(
                "warning: the checkpoint was trained with %s process(es), this run has %s: it "
                "continues correctly, but draws different batches than an uninterrupted run",
                resume_from.get("world_size", 1),
                self.dist.world_size,
            )

    def _warmup_text(self) -> str:
        used = warmup_steps(self.cfg)
        if used == self.cfg.warmup_steps:
            return str(used)
        return (
            f"{used} (--warmup-steps {self.cfg.warmup_steps} capped at "
            f"{MAX_WARMUP_PERCENT}% of the {self.cfg.max_steps:,} steps, to reach the full lr)"
        )

    # --- one step ---

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's slice of one global batch of random training windows."""
        b, r = self.cfg.batch_size, self.dist.rank
        x, y = self.bins.sample_batch(
            "train", b * self.dist.world_size, self.model_config.block_size, self.sampler
        )
        x, y = torch.from_numpy(x[r * b : (r + 1) * b]), torch.from_numpy(y[r * b : (r + 1) * b])
        if self.device.type == "cuda":  # pinned host memory lets the copy overlap compute
            return (
                x.pin_memory().to(self.device, non_blocking=True),
                y.pin_memory().to(self.device, non_blocking=True),
            )
        return x.to(self.device), y.to(self.device)

    def train_step(self) -> torch.Tensor:
        """One optimizer step over `grad_accum` micro-batches. Returns the mean loss as a device
        tensor, not synchronised: call `.item()` only when the number is needed."""
        cfg = self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, cfg)
        total = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum):
            x, y = self._batch()
            # DDP averages gradients during backward; do it once, on the last micro-batch.
            last = micro == cfg.grad_accum - 1
            with nullcontext() if last or not self.dist.enabled else self.model.no_sync():
                with autocast_context(self.device, self.dtype):
                    _, loss = self.model(x, y)
                self.scaler.scale(loss / cfg.grad_accum).backward()
            total += loss.detach()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += self.tokens_per_step
        loss = total / cfg.grad_accum
        self._diverged |= ~torch.isfinite(loss)  # checked (synchronised) only when logging
        return loss

    # --- evaluation ---

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss on the fixed train and val windows, val perplexity and bits per byte."""
        self.raw_model.eval()
        result = {}
        step = self.cfg.batch_size
        for split, (xs, ys) in self.eval_sets.items():
            nats = torch.zeros((), dtype=torch.float64, device=self.device)
            for i in range(0, len(xs), step):
                x = torch.from_numpy(xs[i : i + step]).to(self.device)
                y = torch.from_numpy(ys[i : i + step]).to(self.device)
                with autocast_context(self.device, self.dtype):
                    _, loss = self.raw_model(x, y)
                nats += loss.double() * y.numel()
            result[f"{split}_loss"] = (nats / ys.size).item()
        self.raw_model.train()
        val_nats = result["val_loss"] * self.eval_sets["val"][1].size
        result["val_ppl"] = math.exp(min(result["val_loss"], 50.0))
        result["val_bpb"] = val_nats / (math.log(2) * max(self.val_bytes, 1))
        return result

    # --- checkpoints ---

    def state_dict(self, rng: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Everything an exact resume needs, as tensors and plain data (weights_only-safe)."""
        cfg = self.cfg
        return {
            "model_config": asdict(self.model_config),
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            # The LR schedule is a pure function of the step and these settings.
            "schedule": {
                "lr": cfg.lr,
                "warmup_steps": warmup_steps(cfg),  # as used: capped (train_config: as asked)
                "max_steps": cfg.max_steps,
                "min_lr_ratio": cfg.min_lr_ratio,
                "current_lr": lr_at(self.step, cfg),
            },
            "tokens_seen": self.tokens_seen,
            "elapsed_s": self._elapsed(),
            "rng": rng if rng is not None else [ckpt_io.rng_state(self.device)],  # one per rank
            "sampler": self.sampler.bit_generator.state,
            "world_size": self.dist.world_size,
            "train_config": asdict(cfg),
            "monitor": {"history": self.history},
            "tokenizer": {
                "json": self.tokenizer.to_str(),
                "sha256": self.tokenizer_sha256,
                "vocab_size": self.bins.vocab_size,
            },
            "data": {
                "dir": str(cfg.data_dir),
                "train_tokens": len(self.bins.tokens["train"]),
                "val_tokens": len(self.bins.tokens["val"]),
            },
            "versions": ckpt_io.library_versions(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: weights, optimizer, step, RNGs, sampler, history."""
        model_state = {k.removeprefix("_orig_mod."): v for k, v in state["model"].items()}
        self.raw_model.load_state_dict(model_state)
        # The optimizer's saved hyperparameters would override this run's flags; keep ours.
        ours = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, settings in zip(self.optimizer.param_groups, ours, strict=True):
            group.update(settings)
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self.tokens_seen = state["tokens_seen"]
        self.elapsed_before = state["elapsed_s"]
        self.history = list(state["monitor"]["history"])
        self.sampler.bit_generator.state = state["sampler"]
        rngs = state["rng"]
        ckpt_io.set_rng_state(rngs[self.dist.rank % len(rngs)], self.device)

    def save(self, *names: str) -> None:
        """Write the current state to out_dir/<name> for each name (default ckpt.pt), atomically.

        Collective under DDP: every rank's RNG state is gathered, rank 0 writes, all wait for
        it. Refuses to save a diverged model, so the last good checkpoint always survives.
        """
        self._check_finite()
        rng = [ckpt_io.rng_state(self.device)]
        if self.dist.enabled:
            import torch.distributed as dist

            gathered: list[Any] = [None] * self.dist.world_size
            dist.all_gather_object(gathered, rng[0])
            rng = gathered
        if self.dist.is_main:
            state = self.state_dict(rng)
            for name in names or ("ckpt.pt",):
                ckpt_io.save_checkpoint(state, self.out_dir / name)
        if self.dist.enabled:  # when save() returns, on any rank, the file is there to read
            dist.barrier()
        self._saved_step = self.step

    # --- the loop ---

    def fit(self, steps: int | None = None) -> dict[str, Any]:
        """Train until max_steps (or `steps` more steps, the time budget, Ctrl-C/SIGTERM, or an
        early stop), evaluating and saving on the way. Returns the run's summary."""
        cfg = self.cfg
        self._end = cfg.max_steps if steps is None else min(cfg.max_steps, self.step + steps)
        self._session = (time.monotonic(), self.step)
        self._pace_from: tuple[float, int] | None = None
        self._restart_clock()
        stopped: str | None = None
        with _StopRequests() as requests:
            try:
                while self.step < self._end and stopped is None:
                    loss = self.train_step()
                    if self._pace_from is None:
                        self._pace_from = (time.monotonic(), self.step)
                    if cfg.log_interval and (
                        self.step % cfg.log_interval == 0 or self.step == self._session[1] + 1
                    ):
                        self._log_step(loss)
                    if self.step % cfg.eval_interval == 0 or self.step == cfg.max_steps:
                        if self._evaluate_and_save() and cfg.early_stop:
                            stopped = (
                                "early stop: val loss rose while train loss fell (overfitting)"
                            )
                    stopped = stopped or self._stop_requested(requests)
            except KeyboardInterrupt:  # a second Ctrl-C: out at once; the last finished save stands
                logger.warning("quit at once: %s", self._kept())
                raise
            if requests.signum is not None:  # the user wants out now: save, skip the eval
                requests.saving = True  # no further Ctrl-C may cut this save short
                if self._saved_step != self.step:
                    self.save("ckpt.pt")
                logger.info(
                    "saved %s/ckpt.pt at step %s; continue with `%s`",
                    self.out_dir,
                    self.step,
                    train_command(cfg, "--resume"),
                )
            elif self._saved_step != self.step:  # end of a session: a last eval is worth it
                self._evaluate_and_save()
        return self._summary(stopped)

    def _kept(self) -> str:
        """Which checkpoint survives an abrupt end, and how to go on from it."""
        if self._saved_step < 0:
            return "no checkpoint was written yet"
        return (
            f"{self.out_dir}/ckpt.pt from step {self._saved_step} is kept; continue with "
            f"`{train_command(self.cfg, '--resume')}`"
        )

    def _summary(self, stopped: str | None) -> dict[str, Any]:
        cfg = self.cfg
        best = min(self.history, key=lambda h: h["val_loss"]) if self.history else None
        finished = self.step >= cfg.max_steps
        more = ["--max-steps", str(2 * cfg.max_steps)] if finished else []
        best_path = self.out_dir / "best.pt"
        verdict = monitor.summarize(
            self.history,
            vocab_size=self.model_config.vocab_size,
            lr=cfg.lr,
            diagnosis=monitor.diagnose(self.history, cfg.patience, cfg.lr),
            best_command=command("generate", "--checkpoint", best_path),
            more_steps_command=train_command(cfg, "--resume", *more),
        )
        return {
            "step": self.step,
            "stopped": stopped or ("max_steps" if self.step >= self.cfg.max_steps else "steps"),
            "best_step": best["step"] if best else None,
            "best_val_loss": best["val_loss"] if best else None,
            "final_train_loss": self.history[-1]["train_loss"] if self.history else None,
            "final_val_loss": self.history[-1]["val_loss"] if self.history else None,
            "summary": verdict,
        }

    def _log_step(self, loss: torch.Tensor) -> None:
        """The light progress line and its metrics record. Reading the loss waits for the
        device, which is why this runs only every `log_interval` steps."""
        packed = torch.stack([loss.float(), self._diverged.float()])
        if self.dist.enabled:
            import torch.distributed as dist

            dist.all_reduce(packed)  # sum: mean loss over ranks, and any rank diverged
            packed[0] /= self.dist.world_size
        value, diverged = packed.tolist()
        if diverged or not math.isfinite(value):
            raise self._divergence(value)
        record = {
            "kind": "step",
            "step": self.step,
            "loss": value,
            "lr": lr_at(self.step - 1, self.cfg),
            **self._timing(),
        }
        if self.dist.is_main:
            logger.info(monitor.format_record(record, self.cfg.max_steps))
            self.metrics.append(record)

    def _evaluate_and_save(self) -> bool:
        """Eval, log, checkpoint (best.pt too if val improved), plot, diagnose.
        Returns True when the diagnosis is overfitting."""
        timing = self._timing()
        self._check_finite()
        losses = self.evaluate()
        if not all(math.isfinite(v) for v in losses.values()):
            raise self._divergence(losses["val_loss"])
        record = {
            "kind": "eval",
            "step": self.step,
            **losses,
            "lr": lr_at(self.step - 1, self.cfg),
            **timing,
            "tokens": self.tokens_seen,
        }
        improved = all(record["val_loss"] < h["val_loss"] for h in self.history)
        self.history.append({k: record[k] for k in ("step", "train_loss", "val_loss")})
        # best.pt first: an interrupt between the two writes leaves ckpt.pt's history true.
        self.save(*(["best.pt"] if improved else []), "ckpt.pt")
        diagnosis = monitor.diagnose(self.history, self.cfg.patience, self.cfg.lr)
        if self.dist.is_main:
            logger.info(monitor.format_record(record, self.cfg.max_steps))
            self.metrics.append(record)
            monitor.plot_losses(self.metrics.read(), self.out_dir / "loss.png")
            kind = diagnosis.kind if diagnosis else None
            if diagnosis and kind != self._last_diagnosis:
                logger.warning("warning: %s", diagnosis.message)
            self._last_diagnosis = kind
        self._restart_clock()
        return diagnosis is not None and diagnosis.kind == "overfitting"

    # --- time, stopping, divergence ---

    def _restart_clock(self) -> None:
        """Throughput is measured from here (eval and saving time is not training time)."""
        self._mark = (time.monotonic(), self.tokens_seen)

    def _elapsed(self) -> float:
        session = getattr(self, "_session", None)
        return self.elapsed_before + (time.monotonic() - session[0] if session else 0.0)

    def _timing(self) -> dict[str, float]:
        """Throughput since the last eval (its time excluded), elapsed time, and the ETA."""
        now = time.monotonic()
        (mark_time, mark_tokens), (start, start_step) = self._mark, self._session
        # The first step carries one-time costs (allocation, kernel choice, compilation): once a
        # later step is done, the pace is measured from the end of the first.
        if self._pace_from is not None and self.step > self._pace_from[1]:
            start, start_step = self._pace_from
        per_step = (now - start) / max(self.step - start_step, 1)
        eta = (self._end - self.step) * per_step
        if self.cfg.max_minutes:  # the budget counts from the session's start
            eta = min(eta, max(self.cfg.max_minutes * 60 - (now - self._session[0]), 0.0))
        return {
            "tokens_per_s": (self.tokens_seen - mark_tokens) / max(now - mark_time, 1e-9),
            "elapsed_s": self._elapsed(),
            "eta_s": eta,
        }

    def _stop_requested(self, requests: _StopRequests) -> str | None:
        """A signal or the time budget; under DDP agreed by all ranks, so all stop together."""
        over_time = self.cfg.max_minutes and time.monotonic() - self._session[0] >= (
            self.cfg.max_minutes * 60
        )
        code = 2 if requests.signum is not None else 1 if over_time else 0
        if self.dist.enabled:  # one tiny all-reduce per step: a rank may see a signal late
            import torch.distributed as dist

            flag = torch.tensor([code], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            code = int(flag.item())
            if code == 2 and requests.signum is None:
                requests.signum = signal.SIGTERM
        if code == 2:
            return f"stopped by {signal.Signals(requests.signum).name}"
        if code == 1:
            return f"time budget of {self.cfg.max_minutes:g} minutes used"
        return None

    def _check_finite(self) -> None:
        if self._diverged.item():
            raise self._divergence(float("nan"))

    def _divergence(self, value: float) -> TrainingDiverged:
        cfg = self.cfg
        kept = (
            f"{self.out_dir}/ckpt.pt from step {self._saved_step} is kept unchanged"
            if self._saved_step >= 0
            else "no checkpoint was written before it happened"
        )
        hint = (
            f"the usual cause is a learning rate too high for this model: retry with a lower "
            f"one, e.g. --lr {min(cfg.lr / 10, TrainConfig().lr):.1e}"
        )
        if self._saved_step >= 0:
            hint += " and --resume to continue from the kept checkpoint"
        hint += f"; keep gradient clipping on (--grad-clip 1.0; this run has {cfg.grad_clip:g})"
        if self.dtype == torch.float16:
            hint += "; float16 overflows easily, try --dtype bfloat16 or float32"
        return TrainingDiverged(
            f"training diverged: the loss became {value} by step {self.step} "
            f"(학습 발산, lr {cfg.lr:g}); {kept}",
            hint,
        )

    def close(self) -> None:
        """Leave the torchrun job (if we joined one)."""
        if self.dist.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


class _StopRequests:
    """Ctrl-C and SIGTERM become a request to stop after the current step (which then saves);
    a second Ctrl-C interrupts at once, unless it is an echo of the first (within
    SAME_INTERRUPT_S) or the final checkpoint is being written (`saving`). Only the main thread
    may install signal handlers."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.saving = False
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            echo = time.monotonic() - self._first_at < SAME_INTERRUPT_S
            if signum != signal.SIGINT or echo:
                return  # already stopping
            if self.saving:
                logger.warning("still writing the checkpoint; it takes a moment")
                return
            raise KeyboardInterrupt
        self.signum, self._first_at = signum, time.monotonic()
        logger.warning(
            "%s: stopping after this step and saving (a Ctrl-C more than %g s later quits at "
            "once; 학습을 저장하고 멈춥니다)",
            signal.Signals(signum).name,
            SAME_INTERRUPT_S,
        )

    def __exit__(self, *exc: Any) -> None:
        if self.signum == signal.SIGINT and self._previous:
            # An echo may still be on its way; after restoring the default handler it would
            # interrupt whatever runs next, so stay deaf to it for the rest of the window.
            time.sleep(max(self._first_at + SAME_INTERRUPT_S - time.monotonic(), 0.0))
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


# --- the stage ---------------------------------------------------------------------------------


def run(cfg: TrainConfig) -> dict[str, Any]:
    """`jobgpt train`: train (or resume), then print the final one-line verdict to stdout."""
    memory_note = keep_freed_memory()  # this process trains: let it reuse freed memory
    trainer: Trainer | None = None
    try:
        trainer = Trainer(cfg)
        if memory_note:
            logger.info("  memory: %s", memory_note)
        finished_before = trainer.step >= trainer.cfg.max_steps
        summary = trainer.fit()
    except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        raise oom_error(trainer.cfg if trainer else cfg, err) from None
    finally:
        if trainer is not None:
            trainer.close()
    if trainer.dist.is_main:
        if summary["stopped"] not in ("max_steps", "steps"):
            logger.info("%s at step %s", summary["stopped"], summary["step"])
        finished = ""
        if finished_before:  # the full command is in the verdict when more steps would help
            finished = (
                f"this run already finished at step {summary['step']:,}; pass a larger "
                f"--max-steps with --resume to continue (e.g. --resume --max-steps "
                f"{2 * summary['step']}). Its verdict: "
            )
        print(
            f"train: step {summary['step']:,} — {finished}{summary['summary']} "
            f"(checkpoints in {trainer.out_dir}/)"
        )
    if summary["stopped"] == "stopped by SIGINT":
        raise KeyboardInterrupt  # saved; the CLI exits 130, as an interrupted command should
    return summary


def train_command(cfg: TrainConfig, *flags: str) -> str:
    """The seed script with `flags`, plus --data-dir/--out-dir where this run's are not the
    defaults: a command to copy and run as printed."""
    parts = list(flags)
    for name in ("data_dir", "out_dir"):
        value = str(getattr(cfg, name))
        if value != getattr(TrainConfig(), name):
            parts += [f"--{name.replace('_', '-')}", value]
    return command("train", *parts)


# What allocators say when memory runs out: CUDA and MPS ("... out of memory"), and the CPU's
# DefaultCPUAllocator ("can't allocate memory", or "not enough memory" on Windows).
OOM_MESSAGES = ("out of memory", "can't allocate memory", "not enough memory")


def is_out_of_memory(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, torch.cuda.OutOfMemoryError) or any(m in text for m in OOM_MESSAGES)


def oom_error(cfg: TrainConfig, err: BaseException) -> JobGPTError:
    """Suggest the same effective batch in smaller pieces: batch_size / k with grad_accum * k,
    or a shorter context (attention memory grows with its square)."""
    b, a = cfg.batch_size, cfg.grad_accum
    smaller = max(d for d in range(1, b // 2 + 1) if b % d == 0) if b > 1 else 1
    if "cpuallocator" in str(err).lower() or cfg.device == "cpu":
        where = "the CPU (RAM)"
    elif "cuda" in str(cfg.device) or torch.cuda.is_available():
        where = "the GPU"
    else:
        where = "the device"
    block = f"a shorter --block-size (now {cfg.model.block_size})"
    if smaller == b:
        hint = (
            f"already at --batch-size 1: use {block} or a smaller model (--n-embd, --n-layer),"
            " or --dtype bfloat16"
        )
    else:
        hint = (
            f"use --batch-size {smaller} --grad-accum {a * b // smaller}: the same effective "
            f"batch of {a * b} windows per step, in smaller pieces (add --resume to continue "
            f"from the last checkpoint, if any); or {block}"
        )
    return JobGPTError(
        f"out of memory on {where} with --batch-size {b} --grad-accum {a} "
        f"({str(err).splitlines()[0][:120]})",
        hint,
    )


# --- data ----------------------------------------------------------------------------------------


def open_data(data_dir: str | Path) -> tuple[TokenBins, Tokenizer]:
    """The bins and the tokenizer they were encoded with (TokenBins checks the fingerprint).

    Candidates: the data directory's own tokenizer.json, then the path meta.json recorded when
    the bins were built (relative paths depend on the directory the command runs in). The first
    whose sha256 matches meta.json wins; if none does, the first that exists, so that TokenBins
    names the mismatch.
    """
    from jobgpt.tokenizer import load_tokenizer

    meta = load_meta(data_dir)
    recorded = Path(meta["tokenizer"]["path"])
    candidates = [p for p in (Path(data_dir) / "tokenizer.json", recorded) if p.is_file()]
    if not candidates:
        raise DataError(
            f"the tokenizer of {data_dir} is missing: neither {recorded} (named in meta.json) "
            f"nor {Path(data_dir) / 'tokenizer.json'} exists",
            "put the tokenizer.json the bins were built with into the data directory",
        )
    # The fingerprint is of the parsed tokenizer (as TokenBins checks it), not of the file's bytes.
    loaded = [load_tokenizer(p) for p in candidates]
    wanted = meta["tokenizer"]["sha256"]
    tok = next((t for t in loaded if tokenizer_sha256(t) == wanted), loaded[0])
    return TokenBins(data_dir, tok), tok


def target_bytes(tok: Tokenizer, targets: np.ndarray) -> int:
    """UTF-8 bytes the target tokens decode to: the denominator of bits per byte.

    Each window is decoded as a whole; control tokens (<|endoftext|>) count as no bytes.
    """
    texts = tok.decode_batch(targets.tolist(), skip_special_tokens=True)
    return sum(len(t.encode("utf-8")) for t in texts)
