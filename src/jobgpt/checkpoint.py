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
"""

from __future__ import annotations

import os
import pickle
import platform
import random
import shutil
import zipfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from jobgpt.architectures import Model, build_model
from jobgpt.commands import command
from jobgpt.config import ModelConfig, TrainConfig, deep_merge, make_config
from jobgpt.errors import CheckpointError, ConfigError
from jobgpt.files import atomic_open, exclusive
from jobgpt.runtime import resolve_device
from jobgpt.tokenizer import fingerprint_mismatch, mismatch

FORMAT_VERSION = 1

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
