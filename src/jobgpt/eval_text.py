"""Bits per byte: how well a checkpoint predicts text, in a unit that compares across tokenizers.

Two measurements share the scoring code:

- `score_files`: any files the data stages accept (txt/jsonl/json/csv), read and rendered exactly
  as they read them (`jobgpt.corpus.iter_documents`), each document followed by `<|endoftext|>`
  as in the bins. Scored with full-context sliding windows: the first window scores all its
  targets, each later one (shifted by `stride`) only its last `stride` new targets, so every
  token is scored once and, after the first window, with at least `block - stride` tokens of
  context. Streamed: documents are encoded one by one into a `RollingWindows` buffer that never
  holds more than `block + 2 * stride + 1` tokens, so a 100 MB file costs no more memory than a
  small one.
- `score_val`: the val split of the run's bins, over all its non-overlapping windows, as the
  trainer measures it (`jobgpt.loss_eval.window_losses`), in batches.

Bits per byte = total nats / (ln 2 * UTF-8 bytes of the text). The `<|endoftext|>` targets count
in the nats but not in the bytes (they are no text), as in the trainer's val bpb.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from jobgpt.architectures import Model
from jobgpt.bins import BIN_FILES, TokenBins, load_meta, target_bytes
from jobgpt.corpus import iter_documents
from jobgpt.errors import ConfigError, DataError
from jobgpt.loss_eval import window_losses
from jobgpt.progress import Progress
from jobgpt.qa import EOT
from jobgpt.runtime import autocast_context
from jobgpt.tokenizer import mismatch, special_id

BATCH_WINDOWS = 8  # windows per forward pass: small, so memory stays low on any device


@dataclass(frozen=True)
class Window:
    """Model input `x` and targets `y` (equal length); only the last `scored` targets count."""

    x: np.ndarray
    y: np.ndarray
    scored: int


def check_stride(stride: int | None, block: int) -> int:
    """The stride to use: `stride`, or half the context when unset; refused when it would skip
    tokens (larger than the context) or never move."""
    if stride is None:
        return max(block // 2, 1)
    if not 1 <= stride <= block:
        raise ConfigError(
            f"--stride {stride} does not fit the model's context of {block} tokens",
            f"use a stride from 1 to {block} (unset: {max(block // 2, 1)}, half the context)",
        )
    return stride


class RollingWindows:
    """A token stream in, sliding `Window`s out, holding a bounded tail of the stream.

    The stream starts with `<|endoftext|>` (the context every document starts from, as in
    generation), which is never a target. Tokens are pushed in pieces of at most `stride`, and
    every window that becomes complete is emitted before the next piece, so the buffer holds at
    most a context, a stride of unscored tokens and one piece: `capacity` tokens. `peak` records
    the most it held (tests check it against `capacity`).
    """

    def __init__(self, block: int, stride: int, first_id: int) -> None:
        self.block, self.stride = block, check_stride(stride, block)
        self.buf: list[int] = [first_id]
        self.offset = 0  # stream position of buf[0]
        self.scored_to = 0  # the last target position scored so far (position 0 never is)
        self.peak = 1

    @property
    def capacity(self) -> int:
        return self.block + 2 * self.stride + 1

    def push(self, ids: list[int]) -> Iterator[Window]:
        for start in range(0, len(ids), self.stride):
            self.buf.extend(ids[start : start + self.stride])
            self.peak = max(self.peak, len(self.buf))
            yield from self._ready()

    def finish(self) -> Iterator[Window]:
        """The last window, scoring whatever the full windows left unscored."""
        last = self.offset + len(self.buf) - 1
        if last > self.scored_to:
            yield self._window(last)

    def _ready(self) -> Iterator[Window]:
        last = self.offset + len(self.buf) - 1  # the last position that can be a target
        while True:
            end = self.block if self.scored_to == 0 else self.scored_to + self.stride
            if end > last:
                return
            yield self._window(end)

    def _window(self, end: int) -> Window:
        """The window whose last target is position `end`: full context where the stream has it."""
        start = max(end - self.block, 0)
        tokens = np.asarray(self.buf[start - self.offset : end + 1 - self.offset], np.int64)
        window = Window(tokens[:-1], tokens[1:], end - self.scored_to)
        self.scored_to = end
        # Keep the context of the next target: the next window (or the shorter last one) starts
        # at most `block` positions before it.
        drop = max(self.scored_to + 1 - self.block, 0) - self.offset
        if drop > 0:
            del self.buf[:drop]
            self.offset += drop
        return window


@dataclass
class TextScore:
    """What scoring one input gave; every figure names its unit."""

    input: str
    documents: int = 0
    tokens: int = 0  # targets scored (document tokens and one <|endoftext|> after each)
    bytes: int = 0  # UTF-8 bytes of the documents' text
    nats: float = 0.0
    stride: int = 0

    @property
    def nats_per_token(self) -> float:
        return self.nats / max(self.tokens, 1)

    @property
    def bits_per_byte(self) -> float:
        return self.nats / (math.log(2) * max(self.bytes, 1))

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "nats_per_token": self.nats_per_token,
            "bits_per_byte": self.bits_per_byte,
        }


def score_files(
    model: Model,
    tok: Tokenizer,
    pattern: str,
    stride: int | None = None,
    dtype: torch.dtype = torch.float32,
    stream: RollingWindows | None = None,
) -> TextScore:
    """Bits per byte of the documents in `pattern` (a file, directory or glob).

    `stride` defaults to half the model's context. `stream` lets a test look at the buffer.
    """
    block = model.config.block_size
    stride = check_stride(stride, block)
    eot = special_id(tok, EOT)
    windows = stream or RollingWindows(block, stride, eot)
    score = TextScore(pattern, stride=stride)
    batch: list[Window] = []
    with Progress(f"scoring {pattern}", unit="B") as progress:
        for doc in iter_documents([pattern]):
            ids = tok.encode(doc.text, add_special_tokens=False).ids
            size = len(doc.text.encode("utf-8"))
            score.documents += 1
            score.bytes += size
            for window in windows.push([*ids, eot]):
                batch = _add(model, batch, window, score, dtype)
            progress.update(size)
        for window in windows.finish():
            batch = _add(model, batch, window, score, dtype)
        _score_batch(model, batch, score, dtype)
    return score


def _add(
    model: Model, batch: list[Window], window: Window, score: TextScore, dtype: torch.dtype
) -> list[Window]:
    """Queue `window`; score the queue when it is full or the window length changes."""
    if batch and (len(batch) == BATCH_WINDOWS or len(batch[0].x) != len(window.x)):
        _score_batch(model, batch, score, dtype)
        batch = []
    return [*batch, window]


@torch.inference_mode()
def _score_batch(model: Model, batch: list[Window], score: TextScore, dtype: torch.dtype) -> None:
    if not batch:
        return
    device = model.tok_emb.weight.device
    x = torch.from_numpy(np.stack([w.x for w in batch])).to(device)
    y = torch.from_numpy(np.stack([w.y for w in batch])).to(device)
    with autocast_context(device, dtype):
        logits, _ = model(x)
    new = max(w.scored for w in batch)  # the loss of targets no window scores is not computed
    y = y[:, -new:]
    nats = F.cross_entropy(logits[:, -new:].float().flatten(0, 1), y.flatten(), reduction="none")
    nats = nats.view(y.shape).double()
    for row, window in enumerate(batch):  # only each window's new targets count
        score.nats += nats[row, new - window.scored :].sum().item()
        score.tokens += window.scored


# --- the val split of the run's bins ------------------------------------------------------------


def open_val(data_dir: str | Path, tok: Tokenizer, checkpoint: str) -> TokenBins:
    """The bins in `data_dir`, refused when they were encoded with another tokenizer than the
    checkpoint's (the same ids would be other text, and the loss meaningless)."""
    meta = load_meta(data_dir)
    differs = mismatch(tok, meta["tokenizer"]["sha256"], int(meta["vocab_size"]))
    if differs:
        raise DataError(
            f"the bins in {data_dir} were encoded with another tokenizer than {checkpoint} was "
            f"trained with ({differs})",
            "pass --data-dir with the bins this checkpoint was trained on (or leave it unset: "
            "the checkpoint records them)",
        )
    return TokenBins(data_dir, tok)


@torch.inference_mode()
def score_val(
    model: Model, bins: TokenBins, tok: Tokenizer, dtype: torch.dtype = torch.float32
) -> dict[str, Any]:
    """Loss (nats/token), perplexity and bits per byte over every non-overlapping window of the
    val split, in batches of BATCH_WINDOWS, float64 sums."""
    block = model.config.block_size
    starts = bins.eval_starts("val", block, max_windows=len(bins.tokens["val"]))
    nats, n_bytes = 0.0, 0
    with Progress("scoring the val split", unit="windows") as progress:
        for i in range(0, len(starts), BATCH_WINDOWS):
            xs, ys = bins.windows("val", starts[i : i + BATCH_WINDOWS], block)
            nats += window_losses(model, xs, ys, dtype).sum().item() * block
            n_bytes += target_bytes(tok, ys)
            progress.update(len(xs))
    tokens = len(starts) * block
    loss = nats / max(tokens, 1)
    return {
        "input": str(bins.data_dir / BIN_FILES["val"]),
        "windows": len(starts),
        "tokens": tokens,
        "bytes": n_bytes,
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "bits_per_byte": nats / (math.log(2) * max(n_bytes, 1)),
    }
