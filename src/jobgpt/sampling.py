"""Next-token sampling with a KV cache: the one decoding loop every stage shares.

Pure torch, no text: token ids in, token ids out. `generate_tokens` yields one tensor per step, so
callers can stream, stop early (just stop iterating) or collect everything. Text, stop strings
and printing live in `jobgpt.generator` and `jobgpt.streaming`.

The context window. Positions are learned, so the model can never see more than `block_size`
tokens. A prompt longer than that keeps its most recent `block_size - 1` tokens (leaving room
for the first new token). When a sequence reaches `block_size`, the window *slides*: the cache
is emptied and re-filled ("re-prefilled") with the most recent `block_size // 2` tokens, and
decoding continues one token at a time from there. Sliding by half a window costs one forward
pass over `block_size // 2` tokens every `block_size // 2` new tokens (about one extra token's
work per token), and the model always sees at least half a window of context. Sliding by one
token would keep the context full but needs a full re-prefill at *every* step, since learned
positions shift for every cached key — that is exactly the uncached cost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from jobgpt.architectures import Model
from jobgpt.checks import check_sampling
from jobgpt.model import KVCache

if TYPE_CHECKING:
    from jobgpt.threads import ThreadPolicy

logger = logging.getLogger(__name__)


def penalize_repetition(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty: logits (B, V) of tokens marked in `seen` (B, V) are made less likely.

    A positive logit is divided by `penalty`, a negative one multiplied, so the token always moves
    down (dividing a negative logit would make it *more* likely).
    """
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row from logits (B, V) -> ids (B,).

    temperature 0 is greedy (argmax) and ignores the generator. Otherwise the logits are scaled
    by 1/temperature, cut to the k most likely tokens (top_k > 0), then to the smallest set whose
    probability reaches top_p, and one token is drawn. Top-p only has to sort the k survivors
    when top_k is on, which is what keeps it cheap for a 24k vocabulary.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if 0 < top_k < logits.size(-1):
        candidates, ids = torch.topk(logits, top_k, dim=-1)  # (B, k), sorted descending
    elif top_p < 1:
        candidates, ids = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    else:
        probs = F.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    if top_p < 1:
        candidates = _nucleus(candidates, top_p)
    probs = F.softmax(candidates, dim=-1)
    choice = torch.multinomial(probs, 1, generator=generator)  # (B, 1) index into candidates
    return ids.gather(-1, choice).squeeze(-1)


def _nucleus(sorted_logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask (to -inf) every token after the smallest prefix whose probability reaches top_p."""
    probs = F.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of the more likely tokens; 0 for the first
    return sorted_logits.masked_fill(mass_before >= top_p, float("-inf"))


class ContextWindow:
    """Feeds a growing token sequence to the model and returns next-token logits.

    With `use_cache`, only the newest token goes through the model (its keys/values join the
    cache); without, the whole window is recomputed every step. Both see exactly the same tokens
    — `tokens[:, start:]` — so they give the same logits, sliding included (see the module
    docstring for the rule).
    """

    def __init__(self, model: Model, batch_size: int, use_cache: bool = True) -> None:
        self.model = model
        self.block_size = model.config.block_size
        self.keep = max(1, self.block_size // 2)
        self.cache: KVCache | None = model.new_cache(batch_size) if use_cache else None
        self.start = 0  # index of the first token the model sees
        self.slides = 0

    def logits(self, tokens: torch.Tensor, new: int) -> torch.Tensor:
        """Logits (B, V) for the token after `tokens` (B, L), of which the last `new` are unseen."""
        length = tokens.size(1)
        if length - self.start > self.block_size:
            self._slide(length)
            new = length - self.start
        if self.cache is None:
            logits, _ = self.model(tokens[:, self.start :])
        else:
            logits, _ = self.model(tokens[:, length - new :], cache=self.cache)
        return logits[:, -1, :]

    def _slide(self, length: int) -> None:
        self.start = length - self.keep
        if self.cache is not None:
            self.cache.pos = 0  # empty it; the caller re-prefills with the kept tokens
        self.slides += 1
        # debug, not info: the rule is documented, and a log line would land in streamed text
        logger.debug(
            "context window full (%d tokens): continuing from the last %d tokens",
            self.block_size,
            self.keep,
        )


def crop_prompt(tokens: torch.Tensor, block_size: int) -> torch.Tensor:
    """Keep the most recent block_size - 1 prompt tokens, so the first new token still fits."""
    limit = max(1, block_size - 1)
    if tokens.size(1) > limit:
        logger.warning(
            "prompt has %d tokens but the model's context is %d: keeping the last %d "
            "(프롬프트가 너무 길어 앞부분을 잘랐습니다)",
            tokens.size(1),
            block_size,
            limit,
        )
        tokens = tokens[:, -limit:]
    return tokens


def as_batch(
    prompt_ids: torch.Tensor | Sequence[Sequence[int]], device: torch.device
) -> torch.Tensor:
    """Prompts as a (B, T) long tensor. Rows must have equal length (positions are not padded)."""
    if isinstance(prompt_ids, torch.Tensor):
        tokens = prompt_ids.to(device=device, dtype=torch.long)
    else:
        lengths = {len(p) for p in prompt_ids}
        if len(lengths) != 1:
            raise ValueError(f"prompts in one batch must have the same length, got {lengths}")
        tokens = torch.tensor([list(p) for p in prompt_ids], dtype=torch.long, device=device)
    if tokens.dim() != 2 or tokens.size(1) == 0:
        raise ValueError(f"expected (B, T) prompt ids with T >= 1, got shape {tuple(tokens.shape)}")
    return tokens


@torch.inference_mode()
def generate_tokens(
    model: Model,
    prompt_ids: torch.Tensor | Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    stop_ids: Iterable[int] = (),
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    first_allowed: torch.Tensor | None = None,
    threads: ThreadPolicy | None = None,
) -> Iterator[torch.Tensor]:
    """Sample up to `max_new_tokens` tokens after each prompt, one step at a time.

    Yields a CPU long tensor (B,) per step: row b's new token, or -1 once row b has finished. A
    row finishes on a token in `stop_ids`; that stop token is yielded once (so callers know why
    it stopped), then -1. Iteration ends when every row has finished or after max_new_tokens
    steps. The model should be in eval mode (dropout off). The repetition penalty counts only
    generated tokens, not the prompt: answers must be free to copy names from the posting.
    `first_allowed`, a (V,) bool mask, limits the first new token to those ids (token healing,
    see `jobgpt.generator.TextGenerator.prepare`). `threads` times each step (its rows: the
    batch) and sets the CPU threads it runs with (`jobgpt.threads`); the caller's own work
    between steps is not timed.
    """
    check_sampling(temperature, top_k, top_p, repetition_penalty)
    device = model.tok_emb.weight.device
    tokens = crop_prompt(as_batch(prompt_ids, device), model.config.block_size)  # (B, T)
    batch = tokens.size(0)
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long)
    finished = torch.zeros(batch, dtype=torch.bool)
    seen = None
    if repetition_penalty != 1.0:
        seen = torch.zeros(batch, model.config.vocab_size, dtype=torch.bool, device=device)
    window = ContextWindow(model, batch, use_cache)
    new = tokens.size(1)  # the first forward pass is the prefill of the whole prompt
    for step_index in range(max_new_tokens):
        if threads is not None:
            threads.before_step()
        logits = window.logits(tokens, new)  # (B, V)
        if step_index == 0 and first_allowed is not None:
            logits = logits.masked_fill(~first_allowed.to(device), float("-inf"))
        if seen is not None:
            logits = penalize_repetition(logits, seen, repetition_penalty)
        next_ids = sample_next(logits, temperature, top_k, top_p, generator)  # (B,)
        step = next_ids.cpu()  # the one device sync per step: callers need the ids anyway
        if threads is not None:
            threads.after_step(batch)
        yield step.masked_fill(finished, -1)
        finished |= torch.isin(step, stops)
        if finished.all():
            return
        tokens = torch.cat([tokens, next_ids[:, None]], dim=1)
        if seen is not None:
            seen.scatter_(1, next_ids[:, None], True)
        new = 1
