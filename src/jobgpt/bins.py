"""Reading token bins (data/train.bin, val.bin) and checking them against meta.json.

A bin is a flat array of token ids (``uint16`` while the vocabulary fits, else ``uint32``), every
document followed by ``<|endoftext|>``; `jobgpt.dataset` writes them. ``meta.json`` beside them
records what they were made from, and `TokenBins` refuses bins that do not match their tokenizer
or their recorded sizes, so a wrong or partial file fails loudly instead of training on garbage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from jobgpt.commands import command
from jobgpt.config import DATA_DIR, DatasetConfig
from jobgpt.errors import DataError
from jobgpt.files import atomic_write_text, exclusive
from jobgpt.tokenizer import load_tokenizer, mismatch

FORMAT_VERSION = 1
META_FILE = "meta.json"
SPLITS = ("train", "val")
BIN_FILES = {"train": "train.bin", "val": "val.bin"}
MAX_HINT_INPUTS = 8  # a printed rebuild command lists at most this many inputs
# meta.json records these dataset settings; a printed rebuild command repeats them
REBUILD_SETTINGS = ("val_fraction", "seed", "block_size", "group_min_chars")
# While new bins replace old ones: what goes where (see `publish`)
PENDING_FILE = ".meta.json.pending"


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id below ``vocab_size``."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def build_hint(data_dir: str | Path, again: bool = False, meta: dict | None = None) -> str:
    """The command that (re)builds the bins in `data_dir`, as the user built them.

    With the directory's meta.json it repeats that build's settings (inputs as given, tokenizer,
    split): run as printed, it never swaps the user's corpus for the demo one. Without it, the
    inputs are a placeholder to fill in, unless `data_dir` is the reference pipeline's default.
    """
    meta = meta if isinstance(meta, dict) else {}
    inputs = meta.get("input") or [
        s.get("path") for s in meta.get("sources") or [] if isinstance(s, dict)
    ]
    inputs = [inputs] if isinstance(inputs, str) else [str(i) for i in inputs if i]
    flags: list[object] = []
    if inputs and len(inputs) <= MAX_HINT_INPUTS:
        flags += ["--input", *inputs]
    elif Path(data_dir) != Path(DATA_DIR):
        flags += ["--input", "YOUR_CORPUS_FILES"]
    defaults = DatasetConfig()
    settings = {
        **{name: meta.get(name) for name in REBUILD_SETTINGS},
        "tokenizer": _get(meta, "tokenizer", "path"),
    }
    for name, value in settings.items():
        if value is not None and value != getattr(defaults, name):
            flags += [f"--{name.replace('_', '-')}", value]
    if Path(data_dir) != Path(defaults.out_dir):
        flags += ["--out-dir", data_dir]
    if again:
        flags.append("--overwrite")
    verb = "rebuild" if again else "build"
    return f"{verb} them with `{command('dataset', *flags)}` (jobgpt dataset)"


def load_meta(data_dir: str | Path) -> dict[str, Any]:
    """meta.json of a dataset directory, checked for every field the reader relies on."""
    path = Path(data_dir) / META_FILE
    if (Path(data_dir) / PENDING_FILE).is_file():
        _finish_interrupted_build(Path(data_dir))
    if not path.is_file():
        raise DataError(
            f"no token bins in {data_dir} ({META_FILE} is missing)", build_hint(data_dir)
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(
            f"{path} is not valid JSON ({err})", build_hint(data_dir, again=True)
        ) from err
    except OSError as err:
        raise DataError(f"{path} cannot be read ({err.strerror})", "check its permissions") from err
    problem = _meta_problem(meta)
    if problem:
        hint = build_hint(data_dir, again=True, meta=meta if isinstance(meta, dict) else None)
        raise DataError(f"{path} {problem}: it was edited or damaged", hint)
    return meta


def _finish_interrupted_build(data_dir: Path) -> None:
    """A reader met a swap of bins in progress: complete it if no build is running (the lock
    is free), else say which one is (`OutputBusy`)."""
    try:
        with exclusive(data_dir, "--out-dir", is_dir=True):
            finish_publish(data_dir)
    except (OSError, ValueError, KeyError) as err:
        try:
            meta = json.loads((data_dir / PENDING_FILE).read_text(encoding="utf-8"))["meta"]
        except (OSError, ValueError, KeyError, TypeError):
            meta = None
        raise DataError(
            f"the last build of the bins in {data_dir} was interrupted and cannot be completed "
            f"({err})",
            build_hint(data_dir, again=True, meta=meta),
        ) from None


def _meta_problem(meta: Any) -> str | None:
    """What is wrong with a parsed meta.json, or None. Checked field by field, so a hand-edited
    file gets a message naming the field rather than a traceback from deep in training."""
    if not isinstance(meta, dict):
        return "is not a JSON object"
    if meta.get("format_version") != FORMAT_VERSION:
        return (
            f"has format version {meta.get('format_version')!r}, this jobgpt reads {FORMAT_VERSION}"
        )
    checks = {
        "dtype": meta.get("dtype") in ("uint16", "uint32"),
        "vocab_size": _is_int(meta.get("vocab_size")) and meta["vocab_size"] > 0,
        "eot_id": _is_int(meta.get("eot_id")),
        "tokenizer.path": isinstance(_get(meta, "tokenizer", "path"), str),
        "tokenizer.sha256": isinstance(_get(meta, "tokenizer", "sha256"), str),
    }
    for split in SPLITS:
        tokens = _get(meta, "splits", split, "tokens")
        checks[f"splits.{split}.tokens"] = _is_int(tokens) and tokens >= 0
    bad = [name for name, ok in checks.items() if not ok]
    return f"has a missing or invalid {', '.join(bad)}" if bad else None


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def publish(data_dir: str | Path, meta: dict[str, Any], staged: dict[str, Path]) -> None:
    """Make the staged bins (split -> temp file in `data_dir`) and `meta` the dataset, as one unit.

    Three files cannot be replaced in one atomic step, so the swap is journaled: a pending record
    of what goes where is written first (atomically), then the files are moved. An interrupt
    before the record leaves the old dataset untouched; after it, `finish_publish` completes the
    swap on the next read (the staged files were whole before the record was written). Either
    way the directory never holds bins of one build with the meta.json of another.
    """
    data_dir = Path(data_dir)
    journal = {"meta": meta, "staged": {BIN_FILES[name]: p.name for name, p in staged.items()}}
    atomic_write_text(data_dir / PENDING_FILE, json.dumps(journal, ensure_ascii=False))
    finish_publish(data_dir)


def finish_publish(data_dir: str | Path) -> None:
    """Complete a `publish` that an interrupt cut short; nothing to do when none is pending.
    The caller holds the folder's lock (the dataset stage), or this is a reader's `load_meta`."""
    data_dir = Path(data_dir)
    pending = data_dir / PENDING_FILE
    if not pending.is_file():
        return
    journal = json.loads(pending.read_text(encoding="utf-8"))
    meta = journal["meta"]
    for final, staged in journal["staged"].items():
        if (data_dir / staged).exists():  # not moved yet
            os.replace(data_dir / staged, data_dir / final)
    for name in SPLITS:  # never a meta.json that promises other bins than are there
        expected = int(meta["splits"][name]["tokens"]) * np.dtype(meta["dtype"]).itemsize
        if (data_dir / BIN_FILES[name]).stat().st_size != expected:
            raise ValueError(f"{BIN_FILES[name]} is not the size the pending build recorded")
    atomic_write_text(data_dir / META_FILE, json.dumps(meta, indent=2, ensure_ascii=False))
    pending.unlink()


class TokenBins:
    """train.bin and val.bin as read-only memmaps, validated against meta.json and a tokenizer.

    ``tokenizer`` is the tokenizer training will use (its fingerprint must match the one the
    bins were encoded with); None loads the one meta.json names.
    """

    def __init__(self, data_dir: str | Path, tokenizer: Tokenizer | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.meta = load_meta(self.data_dir)
        if tokenizer is None:
            tokenizer = load_tokenizer(self.meta["tokenizer"]["path"])
        self._check_tokenizer(tokenizer)
        self.vocab_size = int(self.meta["vocab_size"])
        self.dtype = np.dtype(self.meta["dtype"])
        if self.dtype != token_dtype(self.vocab_size):
            raise DataError(
                f"{self.data_dir / META_FILE}: dtype {self.dtype} does not fit vocab "
                f"{self.vocab_size:,}",
                build_hint(self.data_dir, again=True, meta=self.meta),
            )
        self.tokens = {name: self._open(name) for name in SPLITS}

    def _check_tokenizer(self, tok: Tokenizer) -> None:
        recorded = self.meta["tokenizer"]
        differs = mismatch(tok, recorded["sha256"], int(self.meta["vocab_size"]))
        if differs:
            raise DataError(
                f"the bins in {self.data_dir} were encoded with another tokenizer "
                f"({recorded['path']}) than this one: {differs}",
                build_hint(self.data_dir, again=True, meta=self.meta)
                + " after retraining a tokenizer",
            )

    def _open(self, name: str) -> np.ndarray:
        path = self.data_dir / BIN_FILES[name]
        expected = int(self.meta["splits"][name]["tokens"])
        if not path.is_file():
            raise DataError(f"{path} is missing", build_hint(self.data_dir, meta=self.meta))
        size = path.stat().st_size
        if size != expected * self.dtype.itemsize:
            raise DataError(
                f"{path} has {size:,} bytes but meta.json promises {expected:,} {self.dtype} "
                f"tokens ({expected * self.dtype.itemsize:,} bytes): a partial or foreign file",
                build_hint(self.data_dir, again=True, meta=self.meta),
            )
        if expected == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(path, dtype=self.dtype, mode="r")

    def check_block_size(self, block_size: int) -> None:
        """Both splits must hold at least one window of ``block_size`` + 1 tokens."""
        for name in SPLITS:
            n = len(self.tokens[name])
            if n < block_size + 1:
                raise DataError(
                    f"{BIN_FILES[name]} has {n:,} tokens but block_size {block_size:,} needs at "
                    f"least {block_size + 1:,}",
                    "lower --block-size, or rebuild the bins with more text"
                    + (" or a larger --val-fraction" if name == "val" else ""),
                )

    def sample_batch(
        self, split: str, batch_size: int, block_size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``batch_size`` random windows: x = ids[i:i+T], y = ids[i+1:i+1+T], int64 (B, T)."""
        self.check_block_size(block_size)
        high = len(self.tokens[split]) - block_size  # the last start leaves room for y
        return self.windows(split, rng.integers(0, high, size=batch_size), block_size)

    def eval_starts(self, split: str, block_size: int, max_windows: int) -> np.ndarray:
        """Fixed start offsets for evaluation: every non-overlapping window when the split is
        small, else ``max_windows`` evenly spaced ones. The same every call."""
        self.check_block_size(block_size)
        n = len(self.tokens[split])
        count = (n - 1) // block_size
        if count <= max_windows:
            return np.arange(count, dtype=np.int64) * block_size
        return np.linspace(0, n - block_size - 1, max_windows).astype(np.int64)

    def windows(
        self, split: str, starts: np.ndarray, block_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The (x, y) windows at ``starts``, each int64 of shape (len(starts), block_size)."""
        offsets = np.asarray(starts, np.int64)[:, None] + np.arange(block_size + 1)
        chunk = self.tokens[split][offsets].astype(np.int64)  # (B, T+1)
        return np.ascontiguousarray(chunk[:, :-1]), np.ascontiguousarray(chunk[:, 1:])


# --- what training reads ---------------------------------------------------------------------


def open_data(data_dir: str | Path) -> tuple[TokenBins, Tokenizer]:
    """The bins and the tokenizer they were encoded with (TokenBins checks the fingerprint).

    Candidates: the data directory's own tokenizer.json, then the path meta.json recorded when
    the bins were built (relative paths depend on the directory the command runs in). The first
    whose sha256 matches meta.json wins; if none does, the first that exists, so that TokenBins
    names the mismatch.
    """
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
    tok = next((t for t in loaded if mismatch(t, wanted, None) is None), loaded[0])
    return TokenBins(data_dir, tok), tok


def target_bytes(tok: Tokenizer, targets: np.ndarray) -> int:
    """UTF-8 bytes the target tokens decode to: the denominator of bits per byte.

    Each window is decoded as a whole; control tokens (<|endoftext|>) count as no bytes.
    """
    texts = tok.decode_batch(targets.tolist(), skip_special_tokens=True)
    return sum(len(t.encode("utf-8")) for t in texts)


def eval_windows(bins: TokenBins, block: int, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (x, y): up to `n` fixed windows of each split, the same at every eval."""
    return {
        split: bins.windows(split, bins.eval_starts(split, block, n), block)
        for split in ("train", "val")
    }
