"""The optimizers (AdamW, Muon) and the learning-rate schedules (cosine, wsd)."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn as nn

from jobgpt.architectures import build_model
from jobgpt.config import ModelConfig, TrainConfig, make_config
from jobgpt.errors import CheckpointError
from jobgpt.optim import (
    MUON_MOMENTUM_END,
    MUON_MOMENTUM_START,
    Muon,
    apply_schedule,
    load_optimizer_state,
    lr_at,
    lr_factor,
    make_optimizer,
    muon_momentum,
    newton_schulz,
    schedule_record,
    warmup_steps,
)

CPU = torch.device("cpu")
TINY = {"vocab_size": 100, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 32}
# The quintic's band is [0.68, 1.21] for singular values above 0.15% of the Frobenius norm
# (`jobgpt.optim.NS_COEFFICIENTS`); a little slack for float32 rounding.
BAND = (0.65, 1.25)


def train_cfg(**over: object) -> TrainConfig:
    return make_config(TrainConfig, {"device": "cpu", "dtype": "float32", **over})


def tiny_model(seed: int = 0, **over: object) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(**{**TINY, **over}))


def fixed_batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, TINY["vocab_size"], (4, TINY["block_size"] + 1), generator=gen)
    return tokens[:, :-1], tokens[:, 1:]


def train(model: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps: range):
    """Steps of the trainer's order: schedule, loss, backward, step, zero_grad. Last loss."""
    x, y = fixed_batch()
    for step in steps:
        apply_schedule(optimizer, step, cfg)
        _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return loss.item()


# --- Newton–Schulz and the Muon update ---------------------------------------------------------


def gradient_like(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    """A matrix whose singular values fall from 1 to 0.01, as a gradient's do: a few directions
    dominate, and plain momentum would move along those only."""
    k = min(rows, cols)
    u, _ = torch.linalg.qr(torch.randn(rows, k, generator=gen))  # (rows, k) orthonormal columns
    v, _ = torch.linalg.qr(torch.randn(cols, k, generator=gen))
    return u @ torch.diag(torch.logspace(0, -2, k)) @ v.T


def orthogonality_error(m: torch.Tensor) -> float:
    """How far the smaller Gram matrix of m is from the identity."""
    gram = m @ m.T if m.size(0) <= m.size(1) else m.T @ m
    return torch.linalg.matrix_norm(gram - torch.eye(gram.size(0))).item()


@pytest.mark.parametrize("shape", [(96, 32), (32, 96), (48, 48)], ids=["tall", "wide", "square"])
def test_newton_schulz_pushes_singular_values_into_a_band_around_1(shape) -> None:
    grad = gradient_like(*shape, torch.Generator().manual_seed(0))
    ortho = newton_schulz(grad)
    assert ortho.shape == grad.shape and ortho.dtype == torch.float32
    singular = torch.linalg.svdvals(ortho)
    assert BAND[0] <= singular.min() and singular.max() <= BAND[1], singular
    # The input scaled to an orthogonal matrix's Frobenius norm, sqrt(k), to compare fairly.
    scaled = grad * min(shape) ** 0.5 / grad.norm()
    assert orthogonality_error(ortho) < orthogonality_error(scaled) / 4


def test_newton_schulz_ignores_the_gradients_size() -> None:
    grad = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(newton_schulz(grad * 1e3), newton_schulz(grad))
    assert not newton_schulz(torch.zeros(8, 4)).isnan().any()  # a zero gradient stays zero


@pytest.mark.parametrize("shape", [(64, 16), (16, 64), (32, 32)], ids=["tall", "wide", "square"])
def test_a_muon_step_moves_every_entry_about_lr_over_sqrt_cols(shape) -> None:
    """An orthogonal matrix has entries of RMS 1/sqrt(max(rows, cols)); the shape factor makes
    the update's RMS lr/sqrt(cols) for tall matrices too, not smaller."""
    rows, cols = shape
    gen = torch.Generator().manual_seed(0)
    weight = nn.Parameter(torch.zeros(rows, cols))
    weight.grad = torch.randn(rows, cols, generator=gen) * 1e-4  # size does not matter
    lr = 0.02
    group = {"kind": "muon", "params": [weight], "lr": lr, "peak_lr": lr, "momentum": 0.0}
    Muon([group]).step()
    rms = weight.detach().pow(2).mean().sqrt().item()
    expected = lr / math.sqrt(cols)
    assert BAND[0] * expected <= rms <= BAND[1] * expected


# --- the groups -------------------------------------------------------------------------------


def group_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[tuple[str, set]]:
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [(g["kind"], {name_of[id(p)] for p in g["params"]}) for g in optimizer.param_groups]


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest() -> None:
    model = tiny_model()
    cfg = train_cfg(optimizer="muon", lr=3e-3, muon_lr=0.05, weight_decay=0.1)
    optimizer = make_optimizer(model, cfg, CPU)
    (kind1, muon), (kind2, decayed), (kind3, plain) = group_names(model, optimizer)
    assert (kind1, kind2, kind3) == ("muon", "adamw", "adamw")
    matrices = {"attn.qkv.weight", "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight"}
    assert muon == {f"blocks.{i}.{m}" for i in range(2) for m in matrices}
    assert decayed == {"tok_emb.weight", "pos_emb.weight"}  # the tied head is tok_emb, once
    assert all(model.get_parameter(n).dim() == 1 for n in plain) and "ln_f.weight" in plain
    counted = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert counted == model.num_params()
    hyper = [(g["peak_lr"], g["weight_decay"]) for g in optimizer.param_groups]
    assert hyper == [(0.05, 0.0), (3e-3, 0.1), (3e-3, 0.0)]


def test_an_untied_head_stays_on_adamw() -> None:
    model = tiny_model(arch="modern")
    groups = dict(group_names(model, make_optimizer(model, train_cfg(optimizer="muon"), CPU)))
    assert "head.weight" not in groups["muon"] and "tok_emb.weight" not in groups["muon"]
    assert all(name.startswith("blocks.") for name in groups["muon"])


def test_embed_lr_gives_an_untied_embedding_its_own_group_and_schedule() -> None:
    model = tiny_model(arch="modern")
    cfg = train_cfg(optimizer="muon", lr=3e-3, embed_lr=0.2, warmup_steps=0)
    optimizer = make_optimizer(model, cfg, CPU)
    *_, (kind, names) = group_names(model, optimizer)
    assert (kind, names) == ("adamw", {"tok_emb.weight"})
    assert all("tok_emb.weight" not in n for _, n in group_names(model, optimizer)[:-1])
    apply_schedule(optimizer, 0, cfg)
    assert optimizer.param_groups[-1]["lr"] == pytest.approx(0.2)  # scheduled from its peak
    assert optimizer.param_groups[1]["lr"] == pytest.approx(3e-3)


def test_embed_lr_leaves_a_tied_embedding_at_lr() -> None:
    """A tied embedding is the head too: it stays in the AdamW group at --lr."""
    model = tiny_model(arch="modern", tied_head=True)
    plain = make_optimizer(model, train_cfg(optimizer="muon"), CPU)
    own = make_optimizer(model, train_cfg(optimizer="muon", embed_lr=0.2), CPU)
    assert group_names(model, own) == group_names(model, plain)


def test_a_resume_with_another_embed_lr_split_says_so() -> None:
    model = tiny_model(arch="modern")
    before = make_optimizer(model, train_cfg(optimizer="muon"), CPU)
    train(model, before, train_cfg(optimizer="muon"), range(1))
    after = make_optimizer(model, train_cfg(optimizer="muon", embed_lr=0.2), CPU)
    with pytest.raises(CheckpointError, match="--embed-lr"):
        load_optimizer_state(after, saved(before))


def test_adamw_keeps_the_reference_optimizer_with_a_peak_lr() -> None:
    optimizer = make_optimizer(tiny_model(), train_cfg(lr=1e-3), CPU)
    assert type(optimizer) is torch.optim.AdamW
    assert [g["peak_lr"] for g in optimizer.param_groups] == [1e-3, 1e-3]


# --- the steps --------------------------------------------------------------------------------


def test_the_hand_written_adamw_matches_torchs() -> None:
    """A model without blocks gives Muon only AdamW groups: the same steps as torch's AdamW."""

    def no_blocks() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Embedding(100, 16), nn.LayerNorm(16), nn.Linear(16, 100))

    x, y = fixed_batch()
    models = []
    for optimizer_name in ("muon", "adamw"):
        cfg = train_cfg(optimizer=optimizer_name, weight_decay=0.1, warmup_steps=2, max_steps=8)
        model = no_blocks()
        optimizer = make_optimizer(model, cfg, CPU)
        assert {g.get("kind", "adamw") for g in optimizer.param_groups} == {"adamw"}
        for step in range(8):
            apply_schedule(optimizer, step, cfg)
            nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        models.append(model)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_a_few_muon_steps_lower_the_loss() -> None:
    model = tiny_model()
    cfg = train_cfg(optimizer="muon", lr=3e-3, warmup_steps=2, max_steps=30)
    optimizer = make_optimizer(model, cfg, CPU)
    x, y = fixed_batch()
    first = model(x, y)[1].item()
    last = train(model, optimizer, cfg, range(30))
    assert last < 0.7 * first, (first, last)


def saved(optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state after a trip through a file, loaded as the checkpoint loader does."""
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_a_resumed_muon_takes_exactly_the_uninterrupted_steps() -> None:
    cfg = train_cfg(optimizer="muon", warmup_steps=2, max_steps=10)
    model_a = tiny_model()
    optimizer_a = make_optimizer(model_a, cfg, CPU)
    train(model_a, optimizer_a, cfg, range(3))
    model_b = copy.deepcopy(model_a)
    optimizer_b = make_optimizer(model_b, cfg, CPU)
    load_optimizer_state(optimizer_b, saved(optimizer_a))
    train(model_a, optimizer_a, cfg, range(3, 6))
    train(model_b, optimizer_b, cfg, range(3, 6))
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_resume_keeps_this_runs_hyperparameters() -> None:
    old = train_cfg(optimizer="muon", lr=1e-3, muon_lr=0.02, weight_decay=0.1, beta2=0.99)
    new = train_cfg(optimizer="muon", lr=5e-4, muon_lr=0.01, weight_decay=0.0, beta2=0.95)
    model = tiny_model()
    before = make_optimizer(model, old, CPU)
    train(model, before, old, range(2))
    after = make_optimizer(model, new, CPU)
    expected = [{k: v for k, v in g.items() if k != "params"} for g in after.param_groups]
    load_optimizer_state(after, saved(before))
    assert [{k: v for k, v in g.items() if k != "params"} for g in after.param_groups] == expected
    assert len(after.state) == len(before.state)  # the moments and momentum buffers came along


def test_a_resume_with_another_optimizer_says_which_to_use() -> None:
    model = tiny_model()
    adamw = make_optimizer(model, train_cfg(), CPU)
    train(model, adamw, train_cfg(), range(1))
    muon = make_optimizer(model, train_cfg(optimizer="muon"), CPU)
    with pytest.raises(CheckpointError, match="another --optimizer") as error:
        load_optimizer_state(muon, saved(adamw))
    assert "train_config" in (error.value.hint or "")


# --- the schedules ------------------------------------------------------------------------------


def reference_lr_at(step: int, cfg: TrainConfig) -> float:
    """The reference warmup + cosine, as it was before wsd and time-based progress."""
    warmup = warmup_steps(cfg)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = min((step - warmup) / max(cfg.max_steps - warmup, 1), 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * progress))


@pytest.mark.parametrize("max_steps,warmup", [(110, 10), (20, 100), (2000, 100), (1, 0)])
def test_cosine_by_steps_is_the_reference_schedule(max_steps: int, warmup: int) -> None:
    cfg = train_cfg(lr=3e-4, max_steps=max_steps, warmup_steps=warmup, min_lr_ratio=0.1)
    for step in range(max_steps + 20):
        assert lr_at(step, cfg) == pytest.approx(reference_lr_at(step, cfg), rel=1e-12)


def test_wsd_warms_up_holds_then_decays_linearly_to_the_floor() -> None:
    cfg = train_cfg(schedule="wsd", warmup_steps=10, max_steps=100, warmdown=0.4, min_lr_ratio=0.1)
    assert [lr_factor(s, cfg) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert all(lr_factor(s, cfg) == 1.0 for s in range(10, 61))  # stable until 60% of the run
    assert lr_factor(80, cfg) == pytest.approx(0.55)  # half way down from 1 to 0.1
    assert lr_factor(100, cfg) == pytest.approx(0.1) and lr_factor(500, cfg) == pytest.approx(0.1)
    decay = [lr_factor(s, cfg) for s in range(60, 101)]
    steps = [b - a for a, b in zip(decay, decay[1:], strict=False)]
    assert steps == pytest.approx([-0.9 / 40] * 40)  # a straight line


def test_the_warmdown_never_starts_inside_the_warmup() -> None:
    cfg = train_cfg(schedule="wsd", warmup_steps=10, max_steps=50, warmdown=1.0, min_lr_ratio=0.0)
    assert lr_factor(9, cfg) == 1.0 and lr_factor(10, cfg) == 1.0  # no jump down after warmup
    assert lr_factor(30, cfg) == pytest.approx(0.5) and lr_factor(50, cfg) == 0.0


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_progress_is_the_further_of_steps_and_minutes(schedule: str) -> None:
    cfg = train_cfg(schedule=schedule, warmup_steps=10, max_steps=100, min_lr_ratio=0.1)
    assert lr_factor(20, cfg, time_used=1.0) == pytest.approx(0.1)  # the minutes ran out
    assert lr_factor(20, cfg, time_used=0.8) == lr_factor(80, cfg)  # minutes ahead of steps
    assert lr_factor(80, cfg, time_used=0.3) == lr_factor(80, cfg)  # steps ahead of minutes
    assert lr_factor(3, cfg, time_used=0.9) == pytest.approx(0.4)  # the warmup goes by steps
    wsd_start = train_cfg(schedule="wsd", max_steps=100, warmup_steps=0, warmdown=0.4)
    if schedule == "wsd":
        assert lr_factor(5, wsd_start, time_used=0.6) == 1.0  # warmdown starts at 60% of time
        assert lr_factor(5, wsd_start, time_used=0.61) < 1.0


def test_apply_schedule_scales_each_groups_peak_and_warms_up_the_momentum() -> None:
    cfg = train_cfg(optimizer="muon", lr=1e-3, muon_lr=0.02, warmup_steps=10, max_steps=1000)
    optimizer = make_optimizer(tiny_model(), cfg, CPU)
    assert apply_schedule(optimizer, 4, cfg) == pytest.approx(0.5)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01, 5e-4, 5e-4])
    apply_schedule(optimizer, 150, cfg)
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.9)
    assert "momentum" not in optimizer.param_groups[1]
    assert muon_momentum(0) == MUON_MOMENTUM_START and muon_momentum(10**6) == MUON_MOMENTUM_END


def test_the_checkpoint_records_the_schedule() -> None:
    cfg = train_cfg(optimizer="muon", schedule="wsd", warmdown=0.3, muon_lr=0.03, max_steps=100)
    record = schedule_record(cfg, 100, time_used=0.5)
    assert record["current_lr"] == pytest.approx(cfg.lr * cfg.min_lr_ratio)
    assert {k: record[k] for k in ("schedule", "warmdown", "optimizer", "muon_lr")} == {
        "schedule": "wsd",
        "warmdown": 0.3,
        "optimizer": "muon",
        "muon_lr": 0.03,
    }
