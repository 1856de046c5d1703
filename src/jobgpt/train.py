"""Stage 3: train the GPT on the token bins (data/*.bin -> checkpoints/ckpt.pt, best.pt).

`run(cfg)` is `jobgpt train` (and scripts/train_gpt.py): it builds a `jobgpt.trainer.Trainer`,
runs it, and prints the final verdict; after Ctrl-C it saves and the command exits with status
130, after SIGTERM with 143, as interrupted commands do. Multi-GPU and multi-node runs go
through torchrun, e.g. `torchrun --standalone --nproc_per_node=8 scripts/train_gpt.py [flags]`;
`--resume` works the same way.
"""

from __future__ import annotations

import logging
import os
import signal
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from jobgpt import report
from jobgpt.config import TrainConfig
from jobgpt.errors import JobGPTError
from jobgpt.files import check_output, exclusive, sweep_temp_files
from jobgpt.resume import settle_previous_run
from jobgpt.runtime import is_out_of_memory, keep_freed_memory
from jobgpt.trainer import Trainer

logger = logging.getLogger(__name__)


def run(cfg: TrainConfig) -> dict[str, Any]:
    """`jobgpt train`: train (or resume), then print the final one-line verdict to stdout.

    The output folder is checked and locked first (rank 0 writes it, so rank 0 holds the lock),
    and whatever a killed run left there is settled: temp files swept, a run that --overwrite
    was replacing dropped or put back.
    """
    out_dir = Path(cfg.out_dir)
    check_output(out_dir, "--out-dir", is_dir=True)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    with exclusive(out_dir, "--out-dir", is_dir=True) if main_rank else nullcontext():
        if main_rank:
            sweep_temp_files(out_dir)
            _settle(out_dir)
        try:
            summary, trainer = _train(cfg)
        finally:
            if main_rank:
                _settle(out_dir)  # a replacing run that never saved gives the old one back
    if trainer.dist.is_main:
        if summary["stopped"] not in ("max_steps", "steps"):
            logger.info("%s at step %s", summary["stopped"], summary["step"])
        print(report.final_line(summary, trainer.out_dir, summary["finished_before"]))
    if summary["stopped"] == "stopped by SIGINT":
        raise KeyboardInterrupt  # saved; the CLI exits 130, as an interrupted command should
    if summary["stopped"] == "stopped by SIGTERM":
        raise SystemExit(128 + signal.SIGTERM)  # saved, but not finished: `train && ...` stops
    return summary


def _train(cfg: TrainConfig) -> tuple[dict[str, Any], Trainer]:
    memory_note = keep_freed_memory()  # this process trains: let it reuse freed memory
    trainer: Trainer | None = None
    try:
        trainer = Trainer(cfg)
        if memory_note:
            logger.info("  memory: %s", memory_note)
        finished_before = trainer.step >= trainer.cfg.max_steps
        summary = trainer.fit() | {"finished_before": finished_before}
    except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        # the trainer's model config carries the real vocabulary (the flags' is a default)
        used = replace(trainer.cfg, model=trainer.model_config) if trainer else cfg
        raise oom_error(used, err) from None
    finally:
        if trainer is not None:
            trainer.close()
    return summary, trainer


def _settle(out_dir: Path) -> None:
    note = settle_previous_run(out_dir)
    if note:
        logger.info("%s", note)


def oom_error(cfg: TrainConfig, err: BaseException) -> JobGPTError:
    """Out of memory, with a batch that fits (the same effective batch in smaller pieces where
    that is sensible) as the fix."""
    gpu = torch.cuda.is_available()
    text = report.oom_text(cfg, str(err), gpu=gpu, free_bytes=device_memory(cfg.device, gpu))
    return JobGPTError(*text)


def device_memory(device: str, gpu: bool) -> int | None:
    """Bytes of memory training can use on `device`: a GPU's total (at the moment of the error
    its free memory says nothing), else the machine's available RAM (Linux); None where it
    cannot be told."""
    if gpu and device != "cpu" and device != "mps":
        index = torch.device(device).index if device.startswith("cuda:") else None
        return torch.cuda.mem_get_info(index)[1]
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
