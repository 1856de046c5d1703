"""`Trainer`: one training run of the GPT, the piece `jobgpt train` drives and tests reuse.

The loop, top to bottom: pick the device and precision, open the data, build the model and AdamW,
then repeat `train_step` (gradient accumulation, clipping, the lr schedule); every
`eval_interval` steps measure train/val loss on fixed windows, write metrics.jsonl and loss.png,
save ckpt.pt (and best.pt when val improved), and let `jobgpt.monitor` say whether the run
overfits or stalls. Ctrl-C, SIGTERM and the time budget stop it cleanly, saved; `--resume`
continues bit for bit.

Under torchrun each process trains on its own slice of one global batch (NCCL on GPUs, gloo on
CPUs), DDP averages the gradients, rank 0 alone logs and writes files.

Wording is `jobgpt.report`'s; devices, distribution and signals `jobgpt.runtime`'s, precision
`jobgpt.precision`'s, the optimizer and its schedule `jobgpt.optim`'s, batches `jobgpt.batching`'s,
resuming, and keeping a run that --overwrite replaces until the new one saves, `jobgpt.resume`'s.
"""

from __future__ import annotations

import gc
import logging
import math
import signal
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jobgpt import checkpoint as ckpt_io
from jobgpt import report, resume
from jobgpt.architectures import build_model
from jobgpt.batching import DocumentWindows, copy_drills, fit_text, mix_in_copy_drills
from jobgpt.bins import eval_windows, open_data, target_bytes
from jobgpt.config import TrainConfig
from jobgpt.errors import JobGPTError
from jobgpt.loss_eval import evaluate_windows
from jobgpt.metrics import Pace, RunLog
from jobgpt.optim import (
    MAX_WARMUP_PERCENT,
    apply_schedule,
    load_optimizer_state,
    make_optimizer,
    schedule_record,
    warmup_steps,
)
from jobgpt.precision import choose_dtype
from jobgpt.qa import EOT
from jobgpt.runtime import (
    StopRequests,
    autocast_context,
    describe_device,
    init_distributed,
    rank_batch,
    wrap_model,
)
from jobgpt.threads import ThreadPolicy
from jobgpt.tokenizer import RESERVED_IDS, special_id, tokenizer_sha256

logger = logging.getLogger(__name__)

EARLY_STOP = "early stop: val loss rose while train loss fell (overfitting)"


class TrainingDiverged(JobGPTError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


# --- the trainer -------------------------------------------------------------------------------


class Trainer:
    """One training run. `__init__` builds everything (and loads the checkpoint on --resume);
    `fit()` runs the loop; `train_step()`, `evaluate()` and `save()` are its pieces, public so
    benchmarks and tests can drive them one at a time."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.dist, self.device = init_distributed(cfg.device)
        if not self.dist.is_main:  # one voice: only rank 0 reports
            logging.getLogger("jobgpt").setLevel(logging.ERROR)
        resume_from = resume.find_resume_checkpoint(cfg)
        changes = resume.resume_changes(cfg, resume_from) if resume_from is not None else []
        self.cfg, self.out_dir = cfg, Path(cfg.out_dir)
        self._open_data(resume_from)
        self.dtype, self.dtype_why = choose_dtype(self.device, cfg.dtype)
        self._build_model()
        # Progress; a checkpoint overwrites it in load_state_dict.
        self.step, self.tokens_seen = 0, 0
        self.lr = cfg.lr  # the last step's AdamW lr (set by train_step)
        self.pace = Pace()  # throughput, elapsed time (a checkpoint's too) and ETA
        self.progress = 0.0  # the schedule's clock progress (`Pace.clock_progress`), agreed
        self.log = RunLog(self.out_dir, cfg.patience, writes=self.dist.is_main)
        # The loop's state: where this session ends, the divergence flag (a device tensor, read
        # only when logging), the last step written to ckpt.pt (-1: none) and the last warning.
        self.stop_requests = StopRequests()
        self.threads = ThreadPolicy.for_training(cfg.threads, self.device)  # CPU threads per step
        self.end_step = cfg.max_steps
        self._diverged = torch.zeros((), dtype=torch.bool, device=self.device)
        self._saved_step = -1
        self._val_windows: list[float] = []  # the last eval's per-window val losses
        if resume_from is not None:
            self.load_state_dict(resume_from)
            self._saved_step = self.step
            record = resume.data_record(cfg, self.bins, self.tokenizer, self.tokenizer_sha256)
            ours = record["data"]
            if not resume.same_split(resume_from.get("data") or {}, ours):
                logger.warning(
                    "warning: %s",
                    report.split_changed_text(cfg, resume_from["data"], ours, self.step),
                )
                self.log.start_over()  # val losses of two different val splits do not compare
        self.model, self.compile_why = wrap_model(
            self.raw_model, cfg.compile, self.device, self.dist
        )
        self._replacing = False  # an old run set aside (--overwrite) until our first save
        if self.dist.is_main:
            resumed = self.step if resume_from is not None else None
            self._replacing = resume.start_files(self.out_dir, self.log.metrics, resumed)
        log_startup_report(self, resume_from, changes)

    # --- building ---
    def _open_data(self, resume_from: dict[str, Any] | None) -> None:
        """Bins, tokenizer, the model's config (vocab from the tokenizer), fixed eval windows."""
        cfg = self.cfg
        self.bins, self.tokenizer = open_data(cfg.data_dir)
        self.tokenizer_sha256 = tokenizer_sha256(self.tokenizer)
        if resume_from is not None:
            resume.check_tokenizer_match(
                resume_from, self.tokenizer_sha256, self.bins.vocab_size, cfg.data_dir
            )
        self.model_config = replace(cfg.model, vocab_size=self.bins.vocab_size)
        block = self.model_config.block_size
        self.bins.check_block_size(block)
        self.tokens_per_step = cfg.batch_size * cfg.grad_accum * block * self.dist.world_size
        self.eval_sets = eval_windows(self.bins, block, cfg.eval_windows)
        self.val_bytes = target_bytes(self.tokenizer, self.eval_sets["val"][1])
        self.documents = DocumentWindows(
            self.bins.tokens["train"], special_id(self.tokenizer, EOT), block
        )

    def draw_windows(self, rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Copying drills for the first --copy-warmup steps, then text (--copy-share drills)."""
        block, ids = self.model_config.block_size, (RESERVED_IDS, self.bins.vocab_size)
        if self.step < self.cfg.copy_warmup:  # a step's number is the same on every rank
            return copy_drills(rows, block, ids, rng)
        if self.cfg.windows == "documents":
            x, y = self.documents.sample(rows, rng)
        else:
            x, y = self.bins.sample_batch("train", rows, block, rng)
        return mix_in_copy_drills(x, y, self.cfg.copy_share, ids, rng)

    def _build_model(self) -> None:
        """Model, optimizer and loss scaler. Model init and dropout draw from torch's generator
        (seeded per rank: different dropout masks); batches from `sampler`, seeded alike on every
        rank, so all draw the same global batch and each takes its own slice."""
        torch.manual_seed(self.cfg.seed + self.dist.rank)
        self.sampler = np.random.default_rng(self.cfg.seed)
        self.raw_model = build_model(self.model_config).to(self.device)
        self.optimizer = make_optimizer(self.raw_model, self.cfg, self.device, self.dtype)
        # float16 needs its gradients scaled up (then back down) not to underflow to zero.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    # --- one step ---
    def train_step(self) -> torch.Tensor:
        """One optimizer step over `grad_accum` micro-batches. Returns the mean loss as a device
        tensor, not synchronised: call `.item()` only when the number is needed."""
        cfg = self.cfg
        self.threads.before_step()
        # the lr of this step, for the logs: with a time budget it depends on the clock
        self.lr = cfg.lr * apply_schedule(self.optimizer, self.step, cfg, self.progress)
        total = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum):
            rows = (self.draw_windows, self.sampler, cfg.batch_size)
            x, y = rank_batch(*rows, self.dist, self.device)
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
        self.threads.after_step(self.tokens_per_step)
        self.step += 1
        self.tokens_seen += self.tokens_per_step
        loss = total / cfg.grad_accum
        self._diverged |= ~torch.isfinite(loss)  # checked (synchronised) only when logging
        return loss

    def evaluate(self) -> dict[str, float]:
        """Mean loss on the fixed train and val windows, val perplexity and bits per byte. The
        per-window val losses of the last evals are kept, to tell a rise from noise."""
        result, self._val_windows = evaluate_windows(
            self.raw_model, self.eval_sets, self.val_bytes, self.cfg.batch_size, self.dtype
        )
        return result

    # --- checkpoints ---
    def state_dict(self, rng: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Everything an exact resume needs, as tensors and plain data (weights_only-safe)."""
        return {
            "model_config": asdict(self.model_config),
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "schedule": schedule_record(self.cfg, self.step, self.progress),
            "tokens_seen": self.tokens_seen,
            "elapsed_s": self.pace.elapsed_s(),
            "clock_progress": self.progress,
            "rng": rng if rng is not None else [resume.rng_state(self.device)],  # one per rank
            "sampler": self.sampler.bit_generator.state,
            "world_size": self.dist.world_size,
            "train_config": asdict(self.cfg),
            "monitor": self.log.state(),
            **resume.data_record(self.cfg, self.bins, self.tokenizer, self.tokenizer_sha256),
            "versions": ckpt_io.library_versions(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: weights, optimizer, step, RNGs, sampler, history."""
        model_state = {k.removeprefix("_orig_mod."): v for k, v in state["model"].items()}
        self.raw_model.load_state_dict(model_state)
        load_optimizer_state(self.optimizer, state["optimizer"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self.tokens_seen = state["tokens_seen"]
        self.pace.elapsed_before = state["elapsed_s"]
        self.progress = state.get("clock_progress", 0.0)  # older checkpoints have none
        self.pace.progress_before = self.progress
        self.log.load(state["monitor"])
        self.sampler.bit_generator.state = state["sampler"]
        rngs = state["rng"]
        resume.set_rng_state(rngs[self.dist.rank % len(rngs)], self.device)

    def save(self, *names: str) -> None:
        """Write the current state to out_dir/<name> for each name (default ckpt.pt), atomically.

        Collective under DDP: every rank's RNG state is gathered, rank 0 writes, all wait for
        it. Refuses to save a diverged model, so the last good checkpoint always survives.
        """
        self._check_finite()
        rng = self.dist.gather(resume.rng_state(self.device))
        if self.dist.is_main:
            state = self.state_dict(rng)
            for name in names or ("ckpt.pt",):
                ckpt_io.save_checkpoint(state, self.out_dir / name)
            if self._replacing:  # this run has a checkpoint now: the one it replaces can go
                logger.info("%s", resume.settle_previous_run(self.out_dir))
                self._replacing = False
        self.dist.barrier()  # when save() returns, on any rank, the file is there to read
        self._saved_step = self.step

    # --- the loop ---
    def fit(self, steps: int | None = None) -> dict[str, Any]:
        """Train until max_steps (or `steps` more steps, the time budget, Ctrl-C/SIGTERM, or an
        early stop), evaluating and saving on the way. Returns the run's summary."""
        cfg = self.cfg
        self.end_step = cfg.max_steps if steps is None else min(cfg.max_steps, self.step + steps)
        first = self.step + 1  # the session's first step is always logged
        self.pace.start(self.step, self.tokens_seen, self.end_step, cfg.max_minutes * 60)
        self.progress = self.pace.clock_progress()  # agreed by all ranks after every step
        budget = f"time budget of {cfg.max_minutes:g} minutes used"
        stopped: str | None = None
        with self.stop_requests as requests:
            try:
                while self.step < self.end_step and stopped is None:
                    loss = self.train_step()
                    self.pace.stepped(self.step)
                    if cfg.log_interval and (
                        self.step % cfg.log_interval == 0 or self.step == first
                    ):
                        self._log_step(loss)
                    if self.step == cfg.copy_warmup:  # evals measure text: they start now
                        logger.info("%s", report.copy_warmup_done_text(self.step))
                    elif self.step > cfg.copy_warmup and (
                        self.step % cfg.eval_interval == 0 or self.step == cfg.max_steps
                    ):
                        if self._evaluate_and_save() and cfg.early_stop:
                            stopped = EARLY_STOP
                    progress = self.pace.clock_progress()
                    verdict, self.progress = requests.after_step(
                        self.dist, self.device, self.pace.over_budget(), progress, budget
                    )
                    stopped = stopped or verdict
            except KeyboardInterrupt:  # a second Ctrl-C: out at once; the last finished save stands
                logger.warning("quit at once: %s", report.kept_text(cfg, self._saved_step))
                raise
            if requests.signum is not None:  # the user wants out now: save, skip the eval
                requests.saving = True  # no further Ctrl-C may cut this save short
                if self._saved_step != self.step:
                    self.save("ckpt.pt")
                logger.info("%s", report.saved_text(cfg, self.step))
            elif self._saved_step != self.step:  # end of a session: a last eval is worth it
                self._evaluate_and_save()
        if requests.signum is not None:  # also when it came during the last eval or save
            stopped = f"stopped by {signal.Signals(requests.signum).name}"
        self.pace.finish()
        self.pace.progress_before = self.progress
        return report.run_summary(cfg, self.log.history, self.step, self.model_config, stopped)

    def _log_step(self, loss: torch.Tensor) -> None:
        """The light progress line and its metrics record. Reading the loss waits for the
        device, which is why this runs only every `log_interval` steps."""
        value, diverged = self.dist.mean_and_any(loss, self._diverged)
        if diverged or not math.isfinite(value):
            raise self._divergence(value)
        record = {"kind": "step", "step": self.step, "loss": value, "lr": self.lr}
        self.log.record(record | self.pace.record(self.step, self.tokens_seen), self.cfg.max_steps)

    def _evaluate_and_save(self) -> bool:
        """Eval, log, checkpoint (best.pt too if val improved), plot, diagnose.
        Returns True when the diagnosis is overfitting."""
        timing = self.pace.record(self.step, self.tokens_seen)  # before eval time counts
        self._check_finite()
        losses = self.evaluate()
        if not all(math.isfinite(v) for v in losses.values()):
            raise self._divergence(losses["val_loss"])
        record = {"kind": "eval", "step": self.step, **losses, "lr": self.lr}
        record.update(timing, tokens=self.tokens_seen)
        improved = self.log.add_eval(record, self._val_windows)
        # best.pt first: an interrupt between the two writes leaves ckpt.pt's history true.
        self.save(*(["best.pt"] if improved else []), "ckpt.pt")
        self.log.record(record, self.cfg.max_steps)
        muon_lr = self.cfg.muon_lr if self.cfg.optimizer == "muon" else None
        diagnosis = self.log.judge(self.cfg.lr, self.cfg.early_stop, muon_lr)
        self.pace.restart(self.tokens_seen)  # eval and saving time is not training time
        return diagnosis is not None and diagnosis.kind == "overfitting"

    def _check_finite(self) -> None:
        if self._diverged.item():
            raise self._divergence(float("nan"))

    def _divergence(self, value: float) -> TrainingDiverged:
        f16 = self.dtype == torch.float16
        return TrainingDiverged(
            *report.divergence_text(self.cfg, value, self.step, self._saved_step, f16)
        )

    def close(self) -> None:
        """Leave the torchrun job (if we joined one). The DDP wrapper goes first: gloo work it
        holds must not outlive the process group (else an abort at exit, now and then)."""
        self.model = self.raw_model
        gc.collect()
        self.dist.leave()


def log_startup_report(
    trainer: Trainer, resume_from: dict[str, Any] | None, changes: list[str]
) -> None:
    """The start-up report (worded by jobgpt.report) and its warnings, from `trainer`'s facts."""
    bins, eval_sets = trainer.bins, trainer.eval_sets
    facts = report.RunFacts(
        device=describe_device(trainer.device),
        threads=trainer.threads.describe() if trainer.threads.enabled else "",
        world_size=trainer.dist.world_size,
        dtype=str(trainer.dtype).removeprefix("torch."),
        dtype_why=trainer.dtype_why,
        compile_why=trainer.compile_why,
        params=trainer.raw_model.num_params(),
        tokens_per_step=trainer.tokens_per_step,
        warmup=warmup_steps(trainer.cfg),
        warmup_cap_percent=MAX_WARMUP_PERCENT,
        train_tokens=len(bins.tokens["train"]),
        val_tokens=len(bins.tokens["val"]),
        eval_windows=(len(eval_sets["train"][0]), len(eval_sets["val"][0])),
        val_bytes=trainer.val_bytes,
        resumed_step=trainer.step if resume_from is not None else None,
        checkpoint_world_size=resume_from.get("world_size", 1) if resume_from else 1,
        changes=tuple(changes),
        documents_fit=fit_text(trainer.documents.lengths, trainer.model_config.block_size),
    )
    lines, warnings = report.startup_report(trainer.cfg, trainer.model_config, facts)
    logger.info("jobgpt train\n  %s", "\n  ".join(lines))
    for warning in warnings:
        logger.warning("warning: %s", warning)
