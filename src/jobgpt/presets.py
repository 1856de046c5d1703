"""Named bundles of training settings (`jobgpt train --preset NAME`), and why each value.

A preset fills in the settings the user did not type; typed flags always win (`--preset tiny
--lr 1e-2` is "tiny, with this learning rate"). `jobgpt.config.make_config` applies them; `jobgpt
train --help` shows what each one sets. Plain data: no imports.
"""

from __future__ import annotations

from typing import Any

# Presets fill in fields the user did not pass on the command line; explicit flags always win.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # The reference "M4 laptop" run: the dataclass defaults above.
    "m4": {},
    # Small enough to train in minutes on 2 CPU cores; used by demos and tests.
    "tiny": {
        "model": {"block_size": 128, "n_layer": 2, "n_head": 2, "n_embd": 64, "dropout": 0.0},
        "batch_size": 8,
        # On the demo corpus, 200 steps reach val loss 3.01 at lr 3e-3 (5.70 at 1e-3, 4.96 at 1e-2).
        "lr": 3e-3,
        "warmup_steps": 10,
        "max_steps": 200,
        "eval_interval": 50,
        "eval_windows": 16,
        "early_stop": True,
    },
    # `jobgpt demo`: the whole pipeline in about 10 minutes on 2 CPU cores. The step count fits
    # the demo corpus (about a few epochs); the time budget guarantees the 10 minutes on slow CPUs.
    "demo": {
        # block 256 so a question-answer prompt (~200 tokens) fits the context whole
        "model": {"block_size": 256, "n_layer": 3, "n_head": 3, "n_embd": 192, "dropout": 0.1},
        "batch_size": 8,
        "lr": 2e-3,
        "warmup_steps": 30,
        "max_steps": 600,
        "max_minutes": 7.0,
        "eval_interval": 50,
        "eval_windows": 32,
        "early_stop": True,
    },
    # The modern recipe (`--arch modern`, Muon, warmup-stable-decay, document-aligned windows) at
    # the reference shape (6 layers, 6 heads, width 384, context 256, batch 16). Settings from
    # bench/sweep.py on the shared postings; see the README's comparison table.
    "modern": {
        "model": {"arch": "modern"},
        "optimizer": "muon",
        "muon_lr": 0.02,
        "lr": 3e-3,  # AdamW: the embedding, the head and the norms
        "schedule": "wsd",
        "warmdown": 0.4,
        "warmup_steps": 20,  # Muon's orthogonalised steps need little warmup
        "weight_decay": 0.0,
        "grad_clip": 0.0,  # Muon's update has a fixed size whatever the gradient's norm
        "windows": "documents",
    },
}
