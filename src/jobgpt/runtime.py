"""Where and how tensors run: device choice (and, in the trainer, precision and distribution).

The model never sees any of this; stages call these helpers and move the model themselves.
"""

from __future__ import annotations

import torch

from jobgpt.errors import ConfigError


def resolve_device(spec: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit choice is checked, not trusted."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(
            f"unknown device {spec!r}", "use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {spec!r} asked for, but CUDA is not available here",
            "use --device auto or --device cpu",
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"device {spec!r} asked for, but Apple MPS is not available here",
            "use --device auto or --device cpu",
        )
    return device
