"""The GPT itself: causality, initial loss, learning, and KV-cache equivalence."""

import math

import pytest
import torch

from jobgpt.config import ModelConfig
from jobgpt.model import GPT

TINY = ModelConfig(vocab_size=97, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.0)


@pytest.fixture
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(TINY).eval()


def test_logits_shape_and_loss_at_init_is_uniform(model: GPT) -> None:
    idx = torch.randint(0, TINY.vocab_size, (4, 16))
    targets = torch.randint(0, TINY.vocab_size, (4, 16))
    logits, loss = model(idx, targets=targets)
    assert logits.shape == (4, 16, TINY.vocab_size)
    # A freshly initialised model should be ~uniform over the vocabulary: loss ~ ln(V).
    assert abs(loss.item() - math.log(TINY.vocab_size)) < 0.2


def test_future_tokens_do_not_change_past_logits(model: GPT) -> None:
    idx = torch.randint(0, TINY.vocab_size, (1, 20))
    changed = idx.clone()
    changed[0, 10] = (idx[0, 10] + 1) % TINY.vocab_size
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_overfits_a_single_batch() -> None:
    torch.manual_seed(0)
    model = GPT(TINY)
    idx = torch.randint(0, TINY.vocab_size, (2, 16))
    x, y = idx[:, :-1], idx[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = model(x, targets=y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_cached_decoding_matches_full_forward(model: GPT) -> None:
    idx = torch.randint(0, TINY.vocab_size, (3, 24))
    full, _ = model(idx)
    cache = model.new_cache(batch_size=3)
    prefill, _ = model(idx[:, :10], cache=cache)  # several tokens at once
    steps = [prefill]
    steps.append(model(idx[:, 10:13], cache=cache)[0])  # a chunk after a prefix
    for t in range(13, 24):  # then one token at a time
        steps.append(model(idx[:, t : t + 1], cache=cache)[0])
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


def test_head_is_tied_and_params_counted_once(model: GPT) -> None:
    assert model.head.weight is model.tok_emb.weight
    assert model.num_params() == sum(p.numel() for p in model.parameters())


def test_longer_than_block_size_is_refused(model: GPT) -> None:
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, TINY.block_size + 1, dtype=torch.long))
