"""Stage 3: train the GPT on the token bins (data/*.bin -> checkpoints/ckpt.pt, best.pt).

`run(cfg)` is `jobgpt train` (and scripts/train_gpt.py): it builds a `jobgpt.trainer.Trainer`,
runs it, and prints the final verdict; after Ctrl-C it saves and the command exits with status
130, after SIGTERM with 143, as interrupted commands do. Multi-GPU and multi-node runs go
through torchrun, e.g. `torchrun --standalone --nproc_per_node=8 scripts/train_gpt.py [flags]`;
`--resume` works the same way.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from jobgpt import report
from jobgpt.config import TrainConfig
from jobgpt.errors import JobGPTError
from jobgpt.runtime import is_out_of_memory, keep_freed_memory
from jobgpt.trainer import Trainer

logger = logging.getLogger(__name__)


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
        print(report.final_line(summary, trainer.out_dir, finished_before))
    if summary["stopped"] == "stopped by SIGINT":
        raise KeyboardInterrupt  # saved; the CLI exits 130, as an interrupted command should
    return summary


def oom_error(cfg: TrainConfig, err: BaseException) -> JobGPTError:
    """Out of memory, with the same effective batch in smaller pieces as the fix."""
    return JobGPTError(*report.oom_text(cfg, str(err), gpu=torch.cuda.is_available()))
