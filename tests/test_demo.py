"""`jobgpt demo`, the README's first command: every stage, real parts, only the model made tiny."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from jobgpt import presets
from jobgpt.cli import main


@pytest.fixture
def tiny_demo_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    # The demo's own preset trains for minutes; the same code path with a tiny model takes
    # seconds. block_size stays 256 so the question-answer prompt fits the context as in the demo.
    tiny = {
        "model": {"block_size": 256, "n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.0},
        "batch_size": 4,
        "lr": 3e-3,
        "warmup_steps": 2,
        "max_steps": 12,
        "eval_interval": 6,
        "eval_windows": 4,
        "early_stop": True,
    }
    monkeypatch.setitem(presets.TRAIN_PRESETS, "demo", tiny)


def demo(tmp_path: Path, *flags: str) -> int:
    out = tmp_path / "demo"
    return main(["demo", "--out-dir", str(out), "--n", "150", "--vocab-size", "600", *flags])


def test_demo_runs_every_stage_and_says_where_everything_is(
    tiny_demo_preset: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo(tmp_path, "--device", "cpu") == 0
    out, err = capsys.readouterr()
    root = tmp_path / "demo"
    # stderr is not a terminal here (as in `jobgpt demo 2>log`): plain log lines, no progress
    # bars redrawn with carriage returns, no library chatter
    assert "\r" not in err and "fontManager" not in err
    assert "tokenizer health" in err and "jobgpt train" in err
    for name in ("data/samples.txt", "data/tokenizer.json", "data/train.bin", "data/meta.json"):
        assert (root / name).is_file(), name
    for name in ("ckpt.pt", "best.pt", "metrics.jsonl", "loss.png", "train_summary.json"):
        assert (root / "checkpoints" / name).is_file(), name
    assert "=== 생성 예시 (generated postings) ===" in out
    assert "질문-답변 예시" in out and "[QUESTION]" in out
    assert "the answer written in the data" in out
    assert "=== demo finished ===" in out and str(root / "checkpoints" / "best.pt") in out
    summary = json.loads((root / "checkpoints" / "train_summary.json").read_text())
    vocab = json.loads((root / "data" / "meta.json").read_text())["vocab_size"]
    assert summary["step"] == 12
    assert summary["best_val_loss"] < math.log(vocab) - 0.3  # it learned: ln(V) = untrained


def test_demo_again_reuses_finished_stages(
    tiny_demo_preset: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert demo(tmp_path, "--device", "cpu") == 0
    trained = (tmp_path / "demo" / "checkpoints" / "ckpt.pt").stat().st_mtime_ns
    capsys.readouterr()
    with caplog.at_level("INFO"):
        assert demo(tmp_path, "--device", "cpu") == 0
    for what in ("demo corpus", "tokenizer", "token bins", "trained model"):
        assert f"reusing the {what}" in caplog.text
    assert (tmp_path / "demo" / "checkpoints" / "ckpt.pt").stat().st_mtime_ns == trained
    assert "=== demo finished ===" in capsys.readouterr().out
