"""Has a checkpoint learned to copy from its context? The induction probe. Prints JSON.

    uv run python bench/copy_probe.py runs/demo/checkpoints/best.pt [more.pt ...]
    uv run python bench/copy_probe.py --drill modern:tied modern:untied gpt   # 400 steps each

A model that answers from the posting it is given must copy what it reads there (a phone number,
an address) into its answer. Transformers learn that as *induction*: having seen `A B` earlier,
predict `B` after the next `A`. The probe feeds sequences of random tokens, each repeated once
(`s s`), and compares the loss on the first copy (unpredictable: about ln(vocab) nats) with the
loss on the second (near zero for a model that copies). No text, no tokenizer rules: only
whether the copying circuit exists. A model whose second half is not far below its first has
learned to reproduce what it saw in training, not to copy what it is shown.

`--drill` asks how fast a recipe *can* learn to copy: it trains a small model (2 layers, 4 heads,
width 128, vocab 8,000) from scratch on nothing but such repeated rows, with the project's own
model and optimizer code, and prints the two losses every 100 steps: the step at which the
second copy's loss falls is when the copying circuit formed.
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from jobgpt.architectures import build_model
from jobgpt.checkpoint import load_model
from jobgpt.config import ModelConfig, TrainConfig, make_config
from jobgpt.optim import apply_schedule, make_optimizer
from jobgpt.presets import TRAIN_PRESETS
from jobgpt.tokenizer import RESERVED_IDS

LENGTH = 100  # tokens per copy: two copies fit every context the presets use
ROWS = 8


# The drill's recipes: the modern model with its head tied or untied (the modern preset's
# optimizer settings), and the reference GPT (tied, AdamW at the sweep's lr 1e-3).
MODERN = ("optimizer", "muon_lr", "lr", "embed_lr", "schedule", "warmdown", "weight_decay")
MODERN_OPTIMIZER = {key: TRAIN_PRESETS["modern"][key] for key in MODERN}
DRILLS = {
    "modern:tied": ({"arch": "modern", "tied_head": True}, MODERN_OPTIMIZER),
    "modern:untied": ({"arch": "modern", "tied_head": False}, MODERN_OPTIMIZER),
    "gpt": ({"arch": "gpt"}, {"optimizer": "adamw", "lr": 1e-3}),
}
DRILL_SHAPE = {"n_layer": 2, "n_head": 4, "n_embd": 128, "dropout": 0.0}
DRILL_VOCAB = 8000


def repeated_rows(rows: int, vocab: int, gen: torch.Generator) -> torch.Tensor:
    """`rows` sequences of LENGTH random learned tokens (no special or byte ids), each twice."""
    half = torch.randint(RESERVED_IDS, vocab, (rows, LENGTH), generator=gen)
    return torch.cat([half, half], dim=1)


def copy_losses(model: torch.nn.Module, tokens: torch.Tensor) -> tuple[float, float]:
    """Mean loss on the first copy and on the second."""
    with torch.no_grad():
        logits, _ = model(tokens[:, :-1], tokens[:, 1:])
    logp = torch.log_softmax(logits.float(), dim=-1)
    nll = -logp.gather(-1, tokens[:, 1:, None])[..., 0]  # position t predicts token t + 1
    return nll[:, : LENGTH - 1].mean().item(), nll[:, LENGTH:].mean().item()


def drill(name: str, steps: int, seed: int = 0) -> None:
    model_over, train_over = DRILLS[name]
    torch.manual_seed(seed)
    shape = {**DRILL_SHAPE, **model_over, "vocab_size": DRILL_VOCAB, "block_size": 2 * LENGTH}
    model = build_model(ModelConfig(**shape))
    cfg = make_config(TrainConfig, {"max_steps": steps, "warmup_steps": 20, **train_over})
    optimizer = make_optimizer(model, cfg, torch.device("cpu"))
    gen, held_out = torch.Generator().manual_seed(seed + 1), torch.Generator().manual_seed(seed)
    probe_rows = repeated_rows(ROWS, DRILL_VOCAB, held_out)
    for step in range(steps + 1):
        if step % 100 == 0 or step == steps:
            first, second = copy_losses(model.eval(), probe_rows)
            result = {"drill": name, "step": step, "first_copy_loss": round(first, 3)}
            print(json.dumps(result | {"second_copy_loss": round(second, 3)}), flush=True)
        if step == steps:
            break
        model.train()
        apply_schedule(optimizer, step, cfg)
        tokens = repeated_rows(16, DRILL_VOCAB, gen)
        _, loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def probe(path: str, seed: int = 0) -> dict[str, float | str | bool]:
    model, tok, _ = load_model(path, "cpu")
    model.eval()
    vocab = tok.get_vocab_size()
    tokens = repeated_rows(ROWS, vocab, torch.Generator().manual_seed(seed))
    first, second = copy_losses(model, tokens)
    return {
        "checkpoint": path,
        "uniform_loss": round(math.log(vocab), 3),
        "first_copy_loss": round(first, 3),
        "second_copy_loss": round(second, 3),
        "copies": second < 0.5 * first,  # an induction circuit cuts the loss by far more
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*")
    parser.add_argument("--drill", nargs="+", choices=sorted(DRILLS), default=[])
    parser.add_argument("--steps", type=int, default=400, help="--drill: training steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for path in args.checkpoints:
        print(json.dumps(probe(path)), flush=True)
    for name in args.drill:
        drill(name, args.steps)


if __name__ == "__main__":
    main()
