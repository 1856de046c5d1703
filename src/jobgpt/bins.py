"""Reading token bins (data/train.bin, val.bin) and checking them against meta.json.

A bin is a flat array of token ids (``uint16`` while the vocabulary fits, else ``uint32``), every
document followed by ``<|endoftext|>``; `jobgpt.dataset` writes them. ``meta.json`` beside them
records what they were made from, and `TokenBins` refuses bins that do not match their tokenizer
or their recorded sizes, so a wrong or partial file fails loudly instead of training on garbage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from jobgpt.commands import command
from jobgpt.config import DATA_DIR
from jobgpt.errors import DataError
from jobgpt.tokenizer import load_tokenizer, mismatch

FORMAT_VERSION = 1
META_FILE = "meta.json"
SPLITS = ("train", "val")
BIN_FILES = {"train": "train.bin", "val": "val.bin"}


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id below ``vocab_size``."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def build_hint(data_dir: str | Path, again: bool = False) -> str:
    """How to (re)build the bins in `data_dir`: the command names that directory unless it is
    the default, since the dataset stage writes to data/ otherwise."""
    flags = [] if Path(data_dir) == Path(DATA_DIR) else ["--out-dir", data_dir]
    verb = "rebuild" if again else "build"
    return f"{verb} them with `{command('dataset', *flags)}` (jobgpt dataset)"


def load_meta(data_dir: str | Path) -> dict[str, Any]:
    """meta.json of a dataset directory, checked for the fields the reader relies on."""
    path = Path(data_dir) / META_FILE
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
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        found = meta.get("format_version") if isinstance(meta, dict) else None
        raise DataError(
            f"{path} has format version {found!r}, this jobgpt reads {FORMAT_VERSION}",
            build_hint(data_dir, again=True),
        )
    return meta


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
                build_hint(self.data_dir, again=True),
            )
        self.tokens = {name: self._open(name) for name in SPLITS}

    def _check_tokenizer(self, tok: Tokenizer) -> None:
        recorded = self.meta["tokenizer"]
        differs = mismatch(tok, recorded["sha256"], int(self.meta["vocab_size"]))
        if differs:
            raise DataError(
                f"the bins in {self.data_dir} were encoded with another tokenizer "
                f"({recorded['path']}) than this one: {differs}",
                build_hint(self.data_dir, again=True) + " after retraining a tokenizer",
            )

    def _open(self, name: str) -> np.ndarray:
        path = self.data_dir / BIN_FILES[name]
        expected = int(self.meta["splits"][name]["tokens"])
        if not path.is_file():
            raise DataError(f"{path} is missing", build_hint(self.data_dir))
        size = path.stat().st_size
        if size != expected * self.dtype.itemsize:
            raise DataError(
                f"{path} has {size:,} bytes but meta.json promises {expected:,} {self.dtype} "
                f"tokens ({expected * self.dtype.itemsize:,} bytes): a partial or foreign file",
                build_hint(self.data_dir, again=True),
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
