"""The modern recipe (`--preset modern`) through every stage a user runs: train, generate, eval,
export, as the CLI runs them. Shapes are tiny; the recipe's pieces are the preset's own."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from jobgpt.cli import main

TINY_SHAPE = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32"]


def test_the_modern_preset_trains_generates_evaluates_and_exports(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    train = [
        "train", "--preset", "modern", "--data-dir", str(data_dir), "--out-dir", str(run),
        "--device", "cpu", "--dtype", "float32", *TINY_SHAPE, "--batch-size", "4",
        "--max-steps", "6", "--eval-interval", "3", "--eval-windows", "4",
    ]  # fmt: skip
    assert main(train) == 0
    report = capsys.readouterr().err
    assert "model: modern" in report and "Muon lr 0.02 on the blocks' matrices" in report
    assert "windows start at documents" in report and "training documents fit" in report
    assert "constant, then down to 0.1x at the end of the run over its last 40%" in report

    checkpoint = str(run / "ckpt.pt")
    greedy = ["--temperature", "0", "--max-new-tokens", "8", "--no-stream"]
    assert main(["generate", "--checkpoint", checkpoint, "--prompt", "회사명:", *greedy]) == 0
    assert capsys.readouterr().out.strip()

    assert main(["eval", "--checkpoint", checkpoint, "--samples", "0", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert math.isfinite(scores["val"]["bits_per_byte"])

    out = tmp_path / "export"
    assert main(["export", "--checkpoint", checkpoint, "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "qwen3" and config["tie_word_embeddings"] is False


def test_the_modern_architecture_is_refused_a_tied_flag_it_cannot_honour(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", "--no-tied-head"]) == 1  # the reference GPT always ties its head
    err = capsys.readouterr().err
    assert "--no-tied-head is for --arch modern" in err and "Traceback" not in err
