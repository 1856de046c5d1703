"""Which model class a config builds: `--arch gpt` (the reference) or `--arch modern`.

Every stage that makes a model from a config (training, the checkpoint loader, benchmarks) goes
through `build_model`, so adding an architecture is one line here.
"""

from __future__ import annotations

import torch.nn as nn

from jobgpt.config import ModelConfig
from jobgpt.model import GPT
from jobgpt.modern import ModernGPT

ARCHITECTURES: dict[str, type[nn.Module]] = {"gpt": GPT, "modern": ModernGPT}
Model = GPT | ModernGPT  # what the later stages hold: same forward, cache and counting methods


def build_model(config: ModelConfig) -> Model:
    """A freshly initialised model of `config.arch`."""
    return ARCHITECTURES[config.arch](config)  # type: ignore[return-value]
