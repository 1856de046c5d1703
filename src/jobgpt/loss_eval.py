"""Loss on fixed windows: the number every eval line, best.pt and the verdict are based on.

Summed in float64 per split, reported per token (nats), as perplexity, and as bits per byte of
the text the targets decode to, which compares across tokenizers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from jobgpt.runtime import autocast_context


@torch.no_grad()
def evaluate_windows(
    model: torch.nn.Module,
    eval_sets: dict[str, tuple[np.ndarray, np.ndarray]],
    val_bytes: int,
    batch_size: int,
    dtype: torch.dtype,
) -> tuple[dict[str, float], list[float]]:
    """({split}_loss: mean loss per target token on each split's windows, in float64, and
    {split}_se, its standard error over the windows; val_ppl; val_bpb, with `val_bytes` the
    UTF-8 bytes of the val targets), and the loss of each val window: comparing two evals window
    by window tells a real change from noise (`jobgpt.monitor.paired_noise`)."""
    model.eval()
    result = {}
    for split, (xs, ys) in eval_sets.items():
        per_window = torch.cat(
            [
                window_losses(model, xs[i : i + batch_size], ys[i : i + batch_size], dtype)
                for i in range(0, len(xs), batch_size)
            ]
        )
        result[f"{split}_loss"] = per_window.mean().item()
        spread = per_window.std().item() if len(per_window) > 1 else 0.0
        result[f"{split}_se"] = spread / math.sqrt(len(per_window))
        if split == "val":
            val_windows = per_window.tolist()
    model.train()
    val_nats = result["val_loss"] * eval_sets["val"][1].size
    result["val_ppl"] = math.exp(min(result["val_loss"], 50.0))
    result["val_bpb"] = val_nats / (math.log(2) * max(val_bytes, 1))
    return result, val_windows


def window_losses(
    model: torch.nn.Module, xs: np.ndarray, ys: np.ndarray, dtype: torch.dtype
) -> torch.Tensor:
    """The mean loss of each window (B,), in float64, computed in `dtype` autocast."""
    device = next(model.parameters()).device
    x, y = torch.from_numpy(xs).to(device), torch.from_numpy(ys).to(device)
    with autocast_context(device, dtype):
        logits, _ = model(x)
    nats = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")
    return nats.view(y.shape).double().mean(dim=1)
