"""Loss on fixed windows: the number every eval line, best.pt and the verdict are based on.

Summed in float64 per split, reported per token (nats), as perplexity, and as bits per byte of
the text the targets decode to, which compares across tokenizers.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from jobgpt.runtime import autocast_context


@torch.no_grad()
def evaluate_windows(
    model: torch.nn.Module,
    eval_sets: dict[str, tuple[np.ndarray, np.ndarray]],
    val_bytes: int,
    batch_size: int,
    dtype: torch.dtype,
) -> dict[str, float]:
    """{split}_loss: mean loss per target token on each split's windows (summed in float64, so
    many windows add up without rounding); val_ppl; val_bpb, with `val_bytes` the UTF-8 bytes
    of the val targets."""
    device = next(model.parameters()).device
    model.eval()
    result = {}
    for split, (xs, ys) in eval_sets.items():
        nats = torch.zeros((), dtype=torch.float64, device=device)
        for i in range(0, len(xs), batch_size):
            x = torch.from_numpy(xs[i : i + batch_size]).to(device)
            y = torch.from_numpy(ys[i : i + batch_size]).to(device)
            with autocast_context(device, dtype):
                _, loss = model(x, y)
            nats += loss.double() * y.numel()
        result[f"{split}_loss"] = (nats / ys.size).item()
    model.train()
    val_nats = result["val_loss"] * eval_sets["val"][1].size
    result["val_ppl"] = math.exp(min(result["val_loss"], 50.0))
    result["val_bpb"] = val_nats / (math.log(2) * max(val_bytes, 1))
    return result
