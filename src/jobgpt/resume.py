"""Continuing a training run, or replacing one, without ever losing it or silently reusing it.

`jobgpt train --resume` continues bit for bit: `train_config` merges the checkpoint's settings
with the flags typed this time, `resume_changes` says what changed (and refuses another
architecture), `check_tokenizer_match` and `same_split` make sure the data is the same, and
`rng_state` / `set_rng_state` carry every random generator across. `--overwrite` sets the old
run aside (`set_aside_previous_run`) until the new one has saved a checkpoint of its own
(`settle_previous_run`). What a checkpoint holds and how it is read is `jobgpt.checkpoint`'s.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from jobgpt.bins import TokenBins
from jobgpt.checkpoint import load_checkpoint
from jobgpt.config import TrainConfig, deep_merge, make_config
from jobgpt.errors import CheckpointError, ConfigError
from jobgpt.files import exclusive
from jobgpt.metrics import MetricsLog
from jobgpt.tokenizer import fingerprint_mismatch

logger = logging.getLogger(__name__)

# Settings that describe *this invocation* rather than the run: --resume never takes them from
# the checkpoint. (Not the preset: it names the run's settings, so the checkpoint's stays.)
INVOCATION_FIELDS = frozenset(
    {
        "data_dir",
        "out_dir",
        "device",
        "dtype",
        "compile",
        "resume",
        "overwrite",
        "max_minutes",
    }
)
# What an exact resume reads from a checkpoint (the trainer writes all of them).
RESUME_KEYS = ("train_config", "model_config", "model", "optimizer", "step", "tokens_seen",
               "elapsed_s", "rng", "sampler", "monitor")  # fmt: skip
ARCHITECTURE_FIELDS = frozenset({"block_size", "n_layer", "n_head", "n_embd", "bias"})


def check_tokenizer_match(ckpt: dict[str, Any], sha256: str, vocab_size: int, data: str) -> None:
    """Refuse a checkpoint trained with another tokenizer than the data `data` was encoded with.

    The same token ids would mean different text: training on would silently scramble the model.
    """
    info = ckpt.get("tokenizer") or {}
    recorded = (info.get("sha256", "none saved"), info.get("vocab_size"))
    differs = fingerprint_mismatch(recorded, (sha256, vocab_size))
    if differs:
        raise CheckpointError(
            f"the checkpoint was trained with another tokenizer than {data} was encoded with "
            f"({differs})",
            "resume with the data the checkpoint was trained on, or start a new run in another "
            "--out-dir (or --overwrite)",
        )


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Every random generator this process draws from, as plain data and tensors
    (weights_only-safe): torch's CPU generator, numpy's and Python's global ones, and the
    accelerator's generator for `device` (only that one: touching others would wake them)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    if device is not None and device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore what `rng_state` captured; an accelerator state only on the same kind of device."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(_as_tuples(state["python"]))
    if device is not None and device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    if device is not None and device.type == "mps" and "mps" in state:
        torch.mps.set_rng_state(state["mps"])


def _as_tuples(value: Any) -> Any:
    """random.setstate wants tuples all the way down; a saved state may come back with lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value


# --- continuing a run: never lose or silently reuse one ----------------------------------------


def find_resume_checkpoint(cfg: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint to resume from (--resume), or None for a new run. A new run refuses an
    out_dir that already holds one unless --overwrite says so."""
    out = Path(cfg.out_dir)
    latest = out / "ckpt.pt"
    if cfg.resume:
        if not latest.is_file():
            raise CheckpointError(
                f"--resume given, but {latest} does not exist",
                "drop --resume to start a new run, or point --out-dir at the run to continue",
            )
        ckpt = load_checkpoint(latest)
        missing = [key for key in RESUME_KEYS if key not in ckpt]
        if missing:
            raise CheckpointError(
                f"{latest} cannot be resumed: it lacks {', '.join(missing)} (it holds a model, "
                "not a whole training run)",
                f"generate with it (--checkpoint {latest}), or start a new run with --overwrite",
            )
        return ckpt
    existing = [p.name for p in (latest, out / "best.pt") if p.is_file()]
    if existing and not cfg.overwrite:
        raise CheckpointError(
            f"{out} already holds a training run ({', '.join(existing)})",
            "add --resume to continue it, --overwrite to start over (the old run is deleted once "
            "the new one has saved a checkpoint), or choose another --out-dir",
        )
    return None


# --overwrite: the old run's files wait here until the new run has a checkpoint of its own
REPLACED_DIR = ".replaced"
RUN_FILES = ("ckpt.pt", "best.pt", "metrics.jsonl", "loss.png")


def set_aside_previous_run(out_dir: Path) -> bool:
    """Move an old run's files into out_dir/.replaced (for --overwrite), rather than deleting
    them before the new run has saved anything: a new run that diverges or is killed at step 3
    must not cost the user a good run. True if there was anything to move."""
    files = [out_dir / name for name in RUN_FILES if (out_dir / name).exists()]
    if not files:
        return False
    aside = out_dir / REPLACED_DIR
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    for path in files:
        os.replace(path, aside / path.name)
    return True


def settle_previous_run(out_dir: Path) -> str | None:
    """Finish what a replacing run left undone: drop the old run once the new one has a
    checkpoint, else put it back. Returns what was done, for the log, or None."""
    aside = out_dir / REPLACED_DIR
    if not aside.is_dir():
        return None
    if (out_dir / "ckpt.pt").is_file():
        shutil.rmtree(aside)
        return f"removed the run that --overwrite replaced (its files were in {aside})"
    for name in RUN_FILES:  # what the replacing run wrote (best.pt before any ckpt.pt) goes
        if not (aside / name).exists():
            (out_dir / name).unlink(missing_ok=True)
    for path in aside.iterdir():
        os.replace(path, out_dir / path.name)
    aside.rmdir()
    return f"the replacing run saved no checkpoint: the previous run is back in {out_dir}"


def train_config(values: dict[str, Any]) -> TrainConfig:
    """`jobgpt train`'s settings from the flags typed (`values`).

    A new run: the preset with the flags on top. `--resume`: the checkpoint's run settings with
    the flags typed this time on top, so `--resume --lr 3e-4` sets 3e-4 even where that is the
    preset's default, and a bare `--resume` continues the run exactly as configured. Invocation
    settings (paths, device, time budget...) are never taken from the checkpoint. Changing the
    preset of a run is refused; so is changing its architecture (see `resume_changes`).
    """
    if not values.get("resume"):
        return make_config(TrainConfig, values)
    out_dir = values.get("out_dir", TrainConfig().out_dir)
    if (Path(out_dir) / REPLACED_DIR).is_dir():  # a replacing run was killed: settle it first
        with exclusive(out_dir, "--out-dir", is_dir=True):
            settle_previous_run(Path(out_dir))
    ckpt = find_resume_checkpoint(make_config(TrainConfig, {**values, "out_dir": out_dir}))
    known = {f.name for f in fields(TrainConfig)} - INVOCATION_FIELDS
    # Checkpoints written before a field existed lack it: make_config fills in the preset's.
    saved = {k: v for k, v in ckpt["train_config"].items() if k in known}
    saved["model"] = {k: v for k, v in ckpt["model_config"].items() if k != "vocab_size"}
    if values.get("preset", saved["preset"]) != saved["preset"]:
        raise ConfigError(
            f"--preset {values['preset']} conflicts with the checkpoint, trained with preset "
            f"{saved['preset']}; a preset bundles an architecture and a recipe, which a resumed "
            "run keeps",
            "drop --preset to resume; to change a setting, type its flag (e.g. --lr, "
            "--max-steps), or start a new run in another --out-dir",
        )
    return make_config(TrainConfig, deep_merge(saved, values))


def resume_changes(cfg: TrainConfig, ckpt: dict[str, Any]) -> list[str]:
    """What `cfg` changes in the checkpoint's run settings ("lr 0.001 -> 0.0003"), for the
    log. A different architecture is refused: the weights have the checkpoint's shapes."""
    model = ckpt["model_config"]
    for name in sorted(ARCHITECTURE_FIELDS):
        if name in model and getattr(cfg.model, name) != model[name]:
            raise _architecture_conflict(name, model[name], getattr(cfg.model, name))
    saved = {**ckpt["train_config"], **{f"model.{k}": v for k, v in model.items()}}
    ours = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in INVOCATION_FIELDS}
    ours.update({f"model.{f.name}": getattr(cfg.model, f.name) for f in fields(cfg.model)})
    del ours["model"], ours["model.vocab_size"]
    return [
        f"{name.removeprefix('model.')} {saved[name]} -> {value}"
        for name, value in ours.items()
        if name in saved and saved[name] != value
    ]


def _architecture_conflict(name: str, saved: Any, wanted: Any) -> ConfigError:
    flag = "--" + name.replace("_", "-")
    if name == "block_size" and wanted > saved:
        return ConfigError(
            f"{flag} {wanted} is larger than the checkpoint model's block_size {saved}: its "
            f"position table has only {saved} positions",
            f"drop {flag} to resume with the checkpoint's {saved}, or start a new run in "
            "another --out-dir",
        )
    return ConfigError(
        f"{flag} {wanted} conflicts with the checkpoint, whose model has {name} {saved}; a "
        "resumed run keeps the checkpoint's architecture",
        f"drop {flag} to resume, or start a new model with another --out-dir (or --overwrite)",
    )


# --- the run's files and data, checked on every start ------------------------------------------


def start_files(out_dir: Path, metrics: MetricsLog, resumed_step: int | None) -> bool:
    """A new run starts clean files; a resumed one drops records past its checkpoint's step.
    An old run that --overwrite replaces is set aside until the new one has saved (True)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    replacing = resumed_step is None and set_aside_previous_run(out_dir)
    if replacing:
        logger.info(
            "a new run here: the previous run's files wait in %s/%s until this run saves its "
            "first checkpoint (then they are removed)",
            out_dir,
            REPLACED_DIR,
        )
    metrics.reset(keep_through_step=resumed_step)
    return replacing


def same_split(saved: dict[str, Any], ours: dict[str, Any]) -> bool:
    """Whether the bins are those the checkpoint was trained on (same train/val token counts;
    a checkpoint that did not record them passes)."""
    return all(saved.get(k) in (None, ours[k]) for k in ("train_tokens", "val_tokens"))


def data_record(
    cfg: TrainConfig, bins: TokenBins, tok: Tokenizer, sha256: str
) -> dict[str, dict[str, Any]]:
    """The tokenizer itself and the data's shape, for a checkpoint: later stages need no other
    file, and a resume can check it reads the same data."""
    return {
        "tokenizer": {"json": tok.to_str(), "sha256": sha256, "vocab_size": bins.vocab_size},
        "data": {
            "dir": str(cfg.data_dir),
            "train_tokens": len(bins.tokens["train"]),
            "val_tokens": len(bins.tokens["val"]),
        },
    }
