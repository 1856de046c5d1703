"""Checkpoints that carry everything later stages need, written atomically, loaded safely.

A checkpoint is a plain dict of tensors, numbers and strings (so `torch.load(weights_only=True)`
can read it without executing any pickled code):

    format_version   int
    model_config     dict  - ModelConfig fields: the ONLY source of the architecture downstream
    model            state_dict
    tokenizer        {"json": str, "sha256": str, "vocab_size": int} - the tokenizer itself, so
                     generation/serving/export need no other file and can never pick a wrong one
    versions         {"torch", "tokenizers", "numpy", "jobgpt", "python"}: what wrote it
    ...              the trainer adds optimizer, step, RNG and sampler state, train config, etc.
                     (see `jobgpt.trainer.Trainer.state_dict`)

Continuing a run from one (settings, RNG state, the checks that it reads the same data) is
`jobgpt.resume`'s.
"""

from __future__ import annotations

import pickle
import platform
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from jobgpt.architectures import Model, build_model
from jobgpt.commands import command
from jobgpt.config import ModelConfig
from jobgpt.errors import CheckpointError
from jobgpt.files import atomic_open
from jobgpt.runtime import resolve_device
from jobgpt.tokenizer import mismatch

FORMAT_VERSION = 1


def _damaged_hint(path: Path) -> str:
    """What to do about an unreadable checkpoint: its sibling may be intact."""
    other = path.with_name("best.pt" if path.name != "best.pt" else "ckpt.pt")
    if not other.is_file():
        return "the file is damaged or not a jobgpt checkpoint; train again (--overwrite)"
    hint = f"the file is damaged or not a jobgpt checkpoint; {other} may be intact: generate with "
    hint += f"--checkpoint {other}"
    if path.name == "ckpt.pt":  # --resume reads ckpt.pt: best.pt can stand in for it
        hint += f", or copy it to {path} to --resume from it"
    return hint


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """Write to a temp file in the same directory, then rename: a crash never leaves half a file."""
    with atomic_open(path, "wb") as f:
        torch.save({"format_version": FORMAT_VERSION, **payload}, f)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load safely (weights_only=True: tensors and plain data, no code execution)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist",
            f"train one first with `{command('train')}` (or pass --checkpoint PATH)",
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not zipfile.is_zipfile(path):  # torch.save writes a zip: this is not one (any more)
            raise CheckpointError(
                f"checkpoint {path} could not be read (not a checkpoint file, or cut off)",
                _damaged_hint(path),
            ) from None
        # torch's message advises weights_only=False, which would run any code in the file:
        # advice a user must never follow, so it is not passed on.
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain data, which jobgpt "
            "refuses to load (loading them could run code from the file)",
            _damaged_hint(path),
        ) from None
    except OSError as err:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({err.strerror})", _damaged_hint(path)
        ) from None
    except Exception as err:  # torch raises several types for truncated/foreign files
        raise CheckpointError(
            f"checkpoint {path} could not be read ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]})",
            _damaged_hint(path),
        ) from None
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        raise CheckpointError(
            f"{path} is not a jobgpt checkpoint (no model_config/model entries)",
            f"point --checkpoint at a file written by `{command('train')}`",
        )
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt['format_version']}, newer than this jobgpt "
            f"understands ({FORMAT_VERSION})",
            "upgrade jobgpt (git pull && uv sync)",
        )
    return ckpt


def load_model(path: str | Path, device: str = "auto") -> tuple[Model, Tokenizer, dict[str, Any]]:
    """The one loader for every stage that uses a trained model (generate, eval, export).

    Returns the model (eval mode, on `device`), the exact tokenizer it was trained with (embedded
    in the checkpoint, checked against the model) and the checkpoint dict itself (step, configs,
    history...). Nothing else is needed: no tokenizer file, no architecture flags.
    """
    ckpt = load_checkpoint(path)
    tokenizer = tokenizer_from_checkpoint(ckpt, path)
    try:
        model = model_from_checkpoint(ckpt)
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as err:
        # A checkpoint assembled or edited by hand: a config key this version lacks, weights
        # of other shapes than the config says, a non-dict state.
        raise CheckpointError(
            f"{path}: the model in the checkpoint does not fit its own config "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200]})",
            f"the checkpoint is damaged or was assembled by hand; {_damaged_hint(Path(path))}",
        ) from None
    return model.to(resolve_device(device)), tokenizer, ckpt


def model_config_from(ckpt: dict[str, Any]) -> ModelConfig:
    return ModelConfig(**ckpt["model_config"])


def model_from_checkpoint(ckpt: dict[str, Any]) -> Model:
    """Rebuild the model from the checkpoint's own config and weights, in eval mode on the CPU."""
    model = build_model(model_config_from(ckpt))
    # torch.compile prefixes parameter names with "_orig_mod."; accept such state dicts too.
    state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    model.load_state_dict(state)
    return model.eval()


def tokenizer_from_checkpoint(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> Tokenizer:
    """The exact tokenizer the model was trained with, embedded in the checkpoint; refused when
    it does not fit the model (ids would decode to the wrong text)."""
    fix = f"train again with `{command('train')}`"
    info = ckpt.get("tokenizer")
    if not info or "json" not in info:
        raise CheckpointError(
            f"{path} carries no tokenizer", f"it was not written by this version of jobgpt; {fix}"
        )
    try:
        tokenizer = Tokenizer.from_str(info["json"])
    except Exception as err:  # the Rust parser raises a bare Exception
        raise CheckpointError(
            f"{path}: the embedded tokenizer is not valid ({str(err)[:200]})",
            f"the checkpoint is damaged or was assembled by hand; {fix}",
        ) from None
    for recorded in (info, ckpt["model_config"]):  # what was saved; what the weights were built for
        differs = mismatch(tokenizer, recorded.get("sha256"), recorded.get("vocab_size"))
        if differs:
            raise CheckpointError(
                f"{path}: the embedded tokenizer does not fit the checkpoint ({differs})",
                f"the checkpoint is damaged or was assembled by hand; {fix}",
            )
    return tokenizer


def library_versions() -> dict[str, str]:
    """What wrote a checkpoint, so a later failure to load it can be explained."""
    import tokenizers

    import jobgpt

    versions = {
        "torch": torch.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "jobgpt": jobgpt.__version__,
        "python": platform.python_version(),
    }
    # str(): torch.__version__ is a str subclass that weights_only loading rejects.
    return {name: str(v) for name, v in versions.items()}
