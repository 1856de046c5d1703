"""The GPT: the reference architecture, readable top to bottom.

Token embedding + learned position embedding, pre-LayerNorm transformer blocks with causal
self-attention (PyTorch's fused `scaled_dot_product_attention`) and a GELU MLP, a final LayerNorm,
and an output head tied to the token embedding. GPT-2-style initialisation. (`--arch modern`,
in `jobgpt.modern`, builds on the KV cache and the pass helpers at the end of this module.)

This module is pure: it knows nothing of devices, precision, distribution, printing or files. The
trainer and the generator decide those. Shapes: B batch, T time (tokens), C channels (n_embd),
H heads, D head size (C // H), V vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from jobgpt.config import ModelConfig


class KVCache:
    """Keys and values of past tokens, so each new token costs one position, not the whole context.

    Preallocated for `max_len` positions: appending writes into a slice instead of concatenating,
    which keeps decoding cost flat per token. It is filled one of two ways:

    * all rows together: `pos` positions are filled in every row (one prompt, or samples of it);
    * row by row (continuous batching, `jobgpt.engine`): each row is a different request, with
      `lengths[row]` positions filled; a forward pass given `rows` goes through `RowPass`.
    """

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int, like: torch.Tensor):
        shape = (config.n_layer, batch_size, config.n_head, max_len, config.n_embd // config.n_head)
        self.k = torch.zeros(shape, dtype=like.dtype, device=like.device)
        self.v = torch.zeros(shape, dtype=like.dtype, device=like.device)
        self.pos = 0
        # Per-row fill, kept on the CPU: every row-by-row pass reads it to place its tokens, and
        # reading a copy on the device would wait for the device to finish its work first.
        self.lengths = torch.zeros(batch_size, dtype=torch.long)  # (B,)
        self.max_len = max_len

    def append(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H, T, D) after the filled positions; return all keys/values so far."""
        end = self.pos + k.size(2)
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class RowPass:
    """One forward pass over some rows of a KVCache, each row at its own length.

    Row i's new tokens take the positions after its own `cache.lengths[rows[i]]`, so requests of
    different lengths share one batch. Every row gets the same number T of new tokens; a row with
    fewer real ones is right-padded, and the padding's keys are written but never seen: the
    caller advances the row's length by its real count only, so the next pass overwrites them.
    """

    def __init__(self, cache: KVCache, rows: list[int], T: int, device: torch.device) -> None:
        start = cache.lengths[rows]  # (b,) filled positions of each row
        self.cache = cache
        self.end = int(start.max()) + T  # keys to read: up to the longest row's last new token
        self.rows = torch.tensor(rows, device=device)  # (b,)
        self.positions = (start[:, None] + torch.arange(T)).to(device)  # (b, T)
        keys = torch.arange(self.end, device=device)  # (S,)
        # A new token sees the keys at or before its own position in its own row: the row's past,
        # earlier new tokens and itself, but never a shorter row's unfilled or stale tail.
        self.mask = (keys <= self.positions[:, :, None])[:, None]  # (b, 1, T, S)

    def append(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (b, H, T, D) at each row's own positions; return the rows' keys/values."""
        # Index pairs (row i, position t) pick b * T slots of (H, D) each: one write per tensor,
        # not a Python loop over rows.
        slots = (self.rows[:, None], slice(None), self.positions)
        self.cache.k[layer][slots] = k.transpose(1, 2)  # (b, T, H, D)
        self.cache.v[layer][slots] = v.transpose(1, 2)
        keys = self.cache.k[layer][self.rows, :, : self.end]  # (b, H, S, D)
        values = self.cache.v[layer][self.rows, :, : self.end]
        return keys, values


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.proj.is_residual_projection = True  # scaled init, see GPT._init_weights
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, cache: KVCache | RowPass | None = None, layer: int = 0
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = attend(q, k, v, cache, layer)  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.proj(y))


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache | RowPass | None, layer: int
) -> torch.Tensor:
    """Causal attention of the new tokens' q (B, H, T, D) over the cache's past keys and values
    (stored first) and their own k, v. Shared by both architectures."""
    T = q.size(2)
    past, mask = 0, None
    if isinstance(cache, RowPass):  # rows of different lengths: each row its own mask
        k, v = cache.append(layer, k, v)  # (B, H, S, D)
        mask = cache.mask  # (B, 1, T, S)
    elif cache is not None:
        past = cache.pos
        k, v = cache.append(layer, k, v)  # (B, H, past + T, D)
        if past and T > 1:
            mask = _prefix_causal_mask(T, past, q.device)  # (T, past + T)
    return F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=mask,
        # causal without a mask only from position 0; with a cache and one new token, it may
        # see every key
        is_causal=mask is None and past == 0,
        # No dropout on the attention weights: the fused CPU kernel has none, so asking for it
        # falls back to materialising (B, H, T, T) scores and a random mask for them:
        # bench_train.py went from 61% to 68% of the fp32 peak without it. Dropout stays on the
        # embeddings and the residual branches.
    )


def _prefix_causal_mask(T: int, past: int, device: torch.device) -> torch.Tensor:
    """(T, past + T) boolean mask: new token i sees all past keys and new keys up to itself."""
    return torch.ones(T, past + T, dtype=torch.bool, device=device).tril(diagonal=past)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.proj.is_residual_projection = True
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm: normalise, transform, add back — the residual stream stays un-normalised."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, cache: KVCache | RowPass | None = None, layer: int = 0
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class Decoder(nn.Module):
    """What every architecture shares: a config, a token embedding, and the KV cache it decodes
    with. Subclasses build their layers and define forward (see GPT.forward)."""

    config: ModelConfig
    tok_emb: nn.Embedding

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache on this model's device and dtype."""
        like = self.tok_emb.weight
        return KVCache(self.config, batch_size, max_len or self.config.block_size, like)


class GPT(Decoder):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying: one matrix reads and writes tokens
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # GPT-2: N(0, 0.02) everywhere; projections into the residual stream scaled by
        # 1/sqrt(2 * n_layer) so the stream's variance does not grow with depth.
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "is_residual_projection", False):
                std /= math.sqrt(2 * self.config.n_layer)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
        rows: list[int] | None = None,
        n_new: list[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) token ids -> logits (B, T, V), and the mean cross-entropy if targets given.

        With a cache, idx holds only the new tokens; their positions continue after cache.pos.
        With a cache and `rows`, idx[i] continues cache row rows[i] after its own length
        (`RowPass`); `n_new[i]` of its T tokens are real (default all), the rest right padding.
        Targets equal to -1 are ignored in the loss.
        """
        layer_cache, pos = start_pass(idx, cache, rows, self.config.block_size)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        for layer, block in enumerate(self.blocks):
            x = block(x, layer_cache, layer)
        finish_pass(idx, cache, layer_cache, rows, n_new)
        logits = self.head(self.ln_f(x))  # (B, T, V)
        return logits, next_token_loss(logits, targets)

    def num_params(self, include_position: bool = True) -> int:
        """Parameter count (the tied head counted once)."""
        n = sum(p.numel() for p in self.parameters())
        return n if include_position else n - self.pos_emb.weight.numel()

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 per weight (forward + backward) plus attention scores.

        Attention adds 12 * n_layer * n_embd * block_size (PaLM appendix B); the position
        embedding is a lookup, not a matmul, so it is left out of the 6N term.
        """
        c = self.config
        return (
            6 * self.num_params(include_position=False) + 12 * c.n_layer * c.n_embd * c.block_size
        )


# --- what every architecture's forward pass shares ---------------------------------------------


def start_pass(
    idx: torch.Tensor, cache: KVCache | None, rows: list[int] | None, block_size: int
) -> tuple[KVCache | RowPass | None, torch.Tensor]:
    """The cache the layers use for this pass, and the new tokens' positions: (T,), or (B, T)
    when each row continues its own cache row (`RowPass`)."""
    B, T = idx.shape
    if cache is not None and rows is not None:
        row_pass = RowPass(cache, rows, T, idx.device)
        layer_cache: KVCache | RowPass | None = row_pass
        pos, end = row_pass.positions, row_pass.end
    else:
        layer_cache = cache
        start = cache.pos if cache is not None else 0
        pos, end = torch.arange(start, start + T, device=idx.device), start + T
    if end > block_size:
        raise ValueError(f"sequence of {end} tokens exceeds block_size {block_size}")
    return layer_cache, pos


def finish_pass(
    idx: torch.Tensor,
    cache: KVCache | None,
    layer_cache: KVCache | RowPass | None,
    rows: list[int] | None,
    n_new: list[int] | None,
) -> None:
    """Advance the cache past this pass's real tokens (per row for a `RowPass`)."""
    B, T = idx.shape
    if isinstance(layer_cache, RowPass):
        assert cache is not None and rows is not None
        cache.lengths[rows] += torch.tensor(n_new if n_new is not None else [T] * B)
    elif cache is not None:
        cache.pos += T


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
    """Mean cross-entropy of the next-token targets (-1: ignored), in float32: bf16 logits
    would round the 24k-way softmax."""
    if targets is None:
        return None
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1
    )
