"""Both architectures (the reference GPT and the modern one): causality, initial loss, learning,
KV-cache equivalence (all rows, and rows of different lengths), rotary positions."""

import math
from dataclasses import replace

import pytest
import torch

from jobgpt.architectures import Model, build_model
from jobgpt.config import ModelConfig
from jobgpt.modern import Rotary

TINY = ModelConfig(vocab_size=97, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
ARCHS = ["gpt", "modern"]


def perturbed(model: Model) -> Model:
    """Every weight moved off its init: the modern model starts with zero output projections
    and head, which would make cache and causality checks pass trivially."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(params=ARCHS)
def model(request: pytest.FixtureRequest) -> Model:
    torch.manual_seed(0)
    return perturbed(build_model(replace(TINY, arch=request.param))).eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_shape_and_loss_at_init_is_uniform(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(replace(TINY, arch=arch)).eval()
    idx = torch.randint(0, TINY.vocab_size, (4, 16))
    targets = torch.randint(0, TINY.vocab_size, (4, 16))
    logits, loss = model(idx, targets=targets)
    assert logits.shape == (4, 16, TINY.vocab_size)
    # A freshly initialised model should be ~uniform over the vocabulary: loss ~ ln(V).
    assert abs(loss.item() - math.log(TINY.vocab_size)) < 0.2


def test_future_tokens_do_not_change_past_logits(model: Model) -> None:
    idx = torch.randint(0, TINY.vocab_size, (1, 20))
    changed = idx.clone()
    changed[0, 10] = (idx[0, 10] + 1) % TINY.vocab_size
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


@pytest.mark.parametrize("arch", ARCHS)
def test_overfits_a_single_batch(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(replace(TINY, arch=arch))
    idx = torch.randint(0, TINY.vocab_size, (2, 16))
    x, y = idx[:, :-1], idx[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = model(x, targets=y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_cached_decoding_matches_full_forward(model: Model) -> None:
    idx = torch.randint(0, TINY.vocab_size, (3, 24))
    full, _ = model(idx)
    cache = model.new_cache(batch_size=3)
    prefill, _ = model(idx[:, :10], cache=cache)  # several tokens at once
    steps = [prefill]
    steps.append(model(idx[:, 10:13], cache=cache)[0])  # a chunk after a prefix
    for t in range(13, 24):  # then one token at a time
        steps.append(model(idx[:, t : t + 1], cache=cache)[0])
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("arch", "tied_head", "tied"), [
    ("gpt", None, True), ("modern", None, False), ("modern", True, True)
])  # fmt: skip
def test_head_tying_and_params_counted_once(arch: str, tied_head: bool | None, tied: bool) -> None:
    model = build_model(replace(TINY, arch=arch, tied_head=tied_head))
    assert (model.head.weight is model.tok_emb.weight) == tied
    assert model.num_params() == sum(p.numel() for p in model.parameters())
    untied_extra = 0 if tied else TINY.vocab_size * TINY.n_embd
    assert model.flops_per_token() > 6 * (model.num_params() - untied_extra)  # + attention


def test_rotary_scores_depend_on_distance_only() -> None:
    """What rotary embeddings are for: q at position m and k at position n score by m - n."""
    rotary = Rotary(head_dim=8, max_len=64, theta=10_000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m: int, n: int) -> float:
        rq, rk = rotary(q, torch.tensor([m])), rotary(k, torch.tensor([n]))
        return float((rq * rk).sum())

    assert score(5, 2) == pytest.approx(score(40, 37), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 4), abs=1e-3)
    assert float(rotary(q, torch.tensor([9])).norm()) == pytest.approx(float(q.norm()), rel=1e-5)


def test_longer_than_block_size_is_refused(model: Model) -> None:
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, TINY.block_size + 1, dtype=torch.long))


def test_rows_of_different_lengths_match_each_row_run_alone(model: Model) -> None:
    """Continuous batching: cache rows filled to different lengths share one forward pass."""
    seqs = [torch.randint(0, TINY.vocab_size, (n,)) for n in (20, 7, 13)]
    alone = [model(s[None])[0][0] for s in seqs]  # (n, V) each, no cache at all
    cache = model.new_cache(batch_size=4)  # row 0 stays empty: rows need not be contiguous
    rows, prompt = [3, 1, 2], [9, 3, 6]  # prefill lengths, right-padded to one pass
    padded = torch.zeros(3, max(prompt), dtype=torch.long)
    for i, (s, n) in enumerate(zip(seqs, prompt, strict=True)):
        padded[i, :n] = s[:n]
    logits, _ = model(padded, cache=cache, rows=rows, n_new=prompt)
    for i, n in enumerate(prompt):
        torch.testing.assert_close(logits[i, :n], alone[i][:n], rtol=1e-5, atol=1e-5)
    assert cache.lengths.tolist() == [0, 3, 6, 9] and cache.pos == 0
    for t in range(4):  # then one token per row per pass, each row at its own position
        idx = torch.stack([s[n + t] for s, n in zip(seqs, prompt, strict=True)])[:, None]
        logits, _ = model(idx, cache=cache, rows=rows)
        for i, n in enumerate(prompt):
            torch.testing.assert_close(logits[i, 0], alone[i][n + t], rtol=1e-5, atol=1e-5)
    # a subset of rows, in another order, with several new tokens each
    chunk = torch.stack([seqs[2][10:13], seqs[0][13:16]])  # rows 2 and 3 are at 10 and 13
    logits, _ = model(chunk, cache=cache, rows=[2, 3])
    torch.testing.assert_close(logits[0], alone[2][10:13], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits[1], alone[0][13:16], rtol=1e-5, atol=1e-5)
    assert cache.lengths.tolist() == [0, 7, 13, 16]


def test_a_row_past_block_size_is_refused(model: Model) -> None:
    cache = model.new_cache(batch_size=2)
    cache.lengths[1] = TINY.block_size
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(2, 1, dtype=torch.long), cache=cache, rows=[0, 1])
