"""The commands the tool prints for a user to copy: one source for every hint and next step.

A hint names the reference script a user already ran (`uv run python scripts/train_gpt.py`),
so that the printed command works verbatim from the repo root; stages without a script are
named by their `jobgpt` subcommand.
"""

from __future__ import annotations

import shlex

# stage -> the reference pipeline's script for it
SCRIPTS = {
    "tokenizer": "scripts/train_tokenizer.py",
    "dataset": "scripts/build_bin_dataset.py",
    "train": "scripts/train_gpt.py",
    "generate": "scripts/generate.py",
}


def command(stage: str, *flags: object) -> str:
    """A runnable command line: `command("train", "--resume")` ->
    "uv run python scripts/train_gpt.py --resume". Flag values are shell-quoted."""
    script = SCRIPTS.get(stage)
    head = f"uv run python {script}" if script else f"uv run jobgpt {stage}"
    return " ".join([head, *(shlex.quote(str(f)) for f in flags)])
