"""Checkpoints that carry everything later stages need, written atomically, loaded safely.

A checkpoint is a plain dict of tensors, numbers and strings (so `torch.load(weights_only=True)`
can read it without executing any pickled code):

    format_version   int
    model_config     dict  - ModelConfig fields: the ONLY source of the architecture downstream
    model            state_dict
    tokenizer        {"json": str, "sha256": str, "vocab_size": int} - the tokenizer itself, so
                     generation/serving/export need no other file and can never pick a wrong one
    ...              the trainer adds optimizer, step, RNG and sampler state, train config, etc.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from jobgpt.config import ModelConfig
from jobgpt.errors import CheckpointError

FORMAT_VERSION = 1
TRAIN_COMMAND = "uv run python scripts/train_gpt.py"


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """Write to a temp file in the same directory, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format_version": FORMAT_VERSION, **payload}, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load safely (weights_only=True: tensors and plain data, no code execution)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist",
            f"train one first with `{TRAIN_COMMAND}` (or pass --checkpoint PATH)",
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated/foreign files
        raise CheckpointError(
            f"checkpoint {path} could not be read ({type(err).__name__}: {err})",
            "the file is damaged or not a jobgpt checkpoint; use best.pt or train again",
        ) from None
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        raise CheckpointError(
            f"{path} is not a jobgpt checkpoint (no model_config/model entries)",
            f"point --checkpoint at a file written by `{TRAIN_COMMAND}`",
        )
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt['format_version']}, newer than this jobgpt "
            f"understands ({FORMAT_VERSION})",
            "upgrade jobgpt (git pull && uv sync)",
        )
    return ckpt


def model_config_from(ckpt: dict[str, Any]) -> ModelConfig:
    return ModelConfig(**ckpt["model_config"])


def model_config_dict(config: ModelConfig) -> dict[str, Any]:
    return asdict(config)


def model_from_checkpoint(ckpt: dict[str, Any]):  # -> GPT (import kept local: model imports torch)
    """Rebuild the GPT from the checkpoint's own config and weights, in eval mode on the CPU."""
    from jobgpt.model import GPT

    model = GPT(model_config_from(ckpt))
    # torch.compile prefixes parameter names with "_orig_mod."; accept such state dicts too.
    state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    model.load_state_dict(state)
    return model.eval()


def tokenizer_from_checkpoint(ckpt: dict[str, Any]):  # -> tokenizers.Tokenizer
    """The exact tokenizer the model was trained with, embedded in the checkpoint."""
    from tokenizers import Tokenizer

    info = ckpt.get("tokenizer")
    if not info or "json" not in info:
        raise CheckpointError(
            "the checkpoint carries no tokenizer",
            f"it was not written by this version of jobgpt; train again with `{TRAIN_COMMAND}`",
        )
    return Tokenizer.from_str(info["json"])
