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
    # `jobgpt demo`: the whole pipeline in about 10 minutes on 2 CPU cores, with the modern
    # recipe (see "modern" below). Measured on the demo corpus (30 held-out QA examples, greedy
    # answers, fields copied from the posting; README "Evaluation"): the reference GPT (3 layers,
    # 192 wide, context 256) got 6.7% of the fields right and made up 86.6%; this recipe without
    # copying drills 41-49% right, made up ~50% (it wrote addresses and dates it remembered).
    # Copying drills (--copy-warmup, --copy-share; batching.copy_drills) teach it to write the
    # token it attends to: with them 82-84% right, 9-11% made up, val 0.123 bits/byte against
    # 0.166 without (150 drill steps; 300: 70% right; bench/results/qa_copy_drills.jsonl); and
    # with numbers as tokens of their own (jobgpt.tokenizer) 99-100% right, 0-1% made up.
    # They need the tied head: untied, the drills teach nothing in 300 steps (bench/copy_probe.py
    # --drill). Context 512: a whole QA example (p90 365 tokens) fits, so an answer is learned
    # with its posting in view. The time budget keeps slow CPUs at 7 min; the schedule then ends
    # its warmdown on time.
    "demo": {
        "model": {
            "arch": "modern",
            "block_size": 512,
            "n_layer": 4,
            "n_head": 4,
            "n_embd": 256,
            "dropout": 0.0,
            "tied_head": True,
        },
        "batch_size": 8,
        "optimizer": "muon",
        "muon_lr": 0.02,
        "lr": 3e-3,
        "schedule": "wsd",
        "warmdown": 0.4,
        "windows": "documents",
        "copy_warmup": 150,
        "copy_share": 0.125,  # one row of 8
        "weight_decay": 0.0,
        "grad_clip": 0.0,
        "warmup_steps": 30,
        "max_steps": 1200,
        "max_minutes": 7.0,
        "eval_interval": 100,
        "eval_windows": 32,
        "early_stop": True,
    },
    # The modern recipe (`--arch modern`, Muon, warmup-stable-decay, document-aligned windows) at
    # the reference shape (6 layers, 6 heads, width 384, context 256, batch 16). Settings from
    # bench/sweep.py on the shared postings; see the README's comparison table. On postings it
    # never saw it beats the reference per token (0.85x) and in 5 minutes (0.88x; 0.87x at 15
    # minutes on a float32-only CPU, where that is half a pass), but it memorises: after two
    # passes over the data (15 minutes with bf16) it is behind (1.03x; --dropout 0.1: 1.00x).
    # Batch 16 stays: 8 was 0.5-1.7% better in one run each (README), 32 worse by 6%.
    "modern": {
        "model": {"arch": "modern"},
        "optimizer": "muon",
        "muon_lr": 0.02,
        "lr": 3e-3,  # AdamW: the head and the norms
        "embed_lr": 0.2,  # AdamW: the token embedding (sweep: 0.1 and 0.6 did worse)
        "schedule": "wsd",
        "warmdown": 0.4,
        "warmup_steps": 20,  # Muon's orthogonalised steps need little warmup
        "weight_decay": 0.0,
        "grad_clip": 0.0,  # Muon's update has a fixed size whatever the gradient's norm
        "windows": "documents",
    },
}
