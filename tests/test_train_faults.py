"""Training never loses a user's run or passes for finished when it is not: SIGTERM exits 143
(and a demo stopped so is not marked done), --overwrite keeps the old run until the new one has
saved, one trainer per output folder, and resuming onto other bins says what it means."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import ONE_THREAD, tiny

from jobgpt import presets
from jobgpt.checkpoint import load_checkpoint
from jobgpt.cli import main
from jobgpt.errors import CheckpointError
from jobgpt.files import exclusive
from jobgpt.resume import REPLACED_DIR, set_aside_previous_run
from jobgpt.stages import run_stage
from jobgpt.train import run
from jobgpt.trainer import Trainer


def sigterm_when(ready) -> threading.Thread:
    """Send this process SIGTERM once `ready()` holds (what a scheduler's stop does)."""

    def wait_then_terminate() -> None:
        deadline = time.monotonic() + 60
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=wait_then_terminate, daemon=True)
    thread.start()
    return thread


def metric_lines(out_dir: Path) -> int:
    path = out_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def train_flags(data_dir: Path, out_dir: Path, *more: str) -> list[str]:
    return ["train", "--data-dir", str(data_dir), "--out-dir", str(out_dir), "--preset", "tiny",
            "--device", "cpu", "--dtype", "float32", "--block-size", "32", "--n-embd", "32",
            "--log-interval", "1", *more]  # fmt: skip


def test_sigterm_saves_and_exits_143(data_dir: Path, tmp_path: Path, capsys) -> None:
    sigterm_when(lambda: metric_lines(tmp_path) >= 3)
    code = main(train_flags(data_dir, tmp_path, "--max-steps", "100000"))
    assert code == 143  # not 0: `train && generate` must not carry on with a half-trained model
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] >= 3
    assert "stopped by SIGTERM" in capsys.readouterr().err


@pytest.fixture
def tiny_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_preset = {
        "model": {"block_size": 64, "n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.0},
        "batch_size": 4,
        "lr": 3e-3,
        "max_steps": 400,
        "eval_interval": 200,
        "log_interval": 1,
        "dtype": "float32",
    }
    monkeypatch.setitem(presets.TRAIN_PRESETS, "demo", tiny_preset)


def test_a_demo_stopped_by_sigterm_is_not_marked_done_and_resumes(
    tiny_demo: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    demo = ["demo", "--out-dir", str(tmp_path), "--n", "60", "--vocab-size", "500"]
    ckpts = tmp_path / "checkpoints"
    sigterm_when(lambda: metric_lines(ckpts) >= 3)
    assert main([*demo, "--device", "cpu"]) == 143
    assert not (ckpts / "train_summary.json").exists()  # not "done"
    with caplog.at_level("INFO", logger="jobgpt"):
        assert main([*demo, "--device", "cpu"]) == 0
    assert "an unfinished run is in" in caplog.text and "resuming" in caplog.text
    summary = json.loads((ckpts / "train_summary.json").read_text())
    assert summary["step"] == 400 and (ckpts / "best.pt").is_file()


def test_overwrite_keeps_the_old_run_until_the_new_one_has_saved(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(tiny(data_dir, tmp_path, max_steps=4))
    old = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert {"ckpt.pt", "best.pt", "metrics.jsonl"} <= set(old)

    def diverge(self: Trainer):  # a new run that fails before its first checkpoint
        raise RuntimeError("loss became NaN at step 1")

    monkeypatch.setattr(Trainer, "train_step", diverge)
    with pytest.raises(RuntimeError):
        run(tiny(data_dir, tmp_path, max_steps=4, overwrite=True))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == old
    assert not (tmp_path / REPLACED_DIR).exists()

    monkeypatch.undo()
    run(tiny(data_dir, tmp_path, max_steps=2, overwrite=True))  # succeeds: the old run goes
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 2
    assert not (tmp_path / REPLACED_DIR).exists()


def test_a_replacing_run_killed_before_saving_gives_the_old_run_back(
    data_dir: Path, tmp_path: Path
) -> None:
    run(tiny(data_dir, tmp_path, max_steps=4))
    assert set_aside_previous_run(tmp_path)  # what a --overwrite run killed with -9 leaves
    assert not (tmp_path / "ckpt.pt").exists()
    summary = run(tiny(data_dir, tmp_path, max_steps=6, resume=True))  # the next start
    assert summary["step"] == 6 and not (tmp_path / REPLACED_DIR).exists()


def test_two_trainers_never_share_an_output_folder(data_dir: Path, tmp_path: Path, capsys) -> None:
    with exclusive(tmp_path, "--out-dir", is_dir=True):
        assert main(train_flags(data_dir, tmp_path, "--max-steps", "2")) == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path} is being written by jobgpt (PID {os.getpid()}" in err
    assert not (tmp_path / "ckpt.pt").exists()


def test_resuming_onto_other_bins_restarts_the_val_history(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "tokenizer.json").write_bytes((data_dir / "tokenizer.json").read_bytes())
    corpus, tok = str(data_dir / "samples.txt"), str(other / "tokenizer.json")
    values = {"input": [corpus], "tokenizer": tok, "out_dir": str(other), "block_size": 128}
    run_stage("dataset", {**values, "seed": 9})  # the same text, another split
    run(tiny(data_dir, tmp_path / "run", max_steps=4))
    with caplog.at_level("WARNING", logger="jobgpt"):
        trainer = Trainer(tiny(other, tmp_path / "run", max_steps=8, resume=True))
    assert "holds other bins than the checkpoint was trained on" in caplog.text
    assert trainer.log.history == [] and trainer.step == 4
    same = Trainer(tiny(data_dir, tmp_path / "run", max_steps=8, resume=True))
    assert len(same.log.history) == 1  # the same bins: the history goes on


def test_kill_9_at_random_moments_never_breaks_a_checkpoint(data_dir: Path, tmp_path: Path) -> None:
    """Saving every step, killed with -9 at random moments (often mid-save): ckpt.pt and
    best.pt always load, the next start sweeps the temp files, and the run resumes."""
    rng = random.Random(7)
    flags = train_flags(data_dir, tmp_path, "--max-steps", "100000", "--eval-interval", "1")
    for _ in range(3):
        resume = ["--resume"] if (tmp_path / "ckpt.pt").exists() else []
        before = metric_lines(tmp_path)
        proc = subprocess.Popen([sys.executable, "-m", "jobgpt", *flags, *resume], env=ONE_THREAD,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 60
        while metric_lines(tmp_path) < before + 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.2))
        proc.kill()
        proc.wait()
        for name in ("ckpt.pt", "best.pt"):
            assert load_checkpoint(tmp_path / name)["step"] >= 1
    step = load_checkpoint(tmp_path / "ckpt.pt")["step"]
    more = ["--resume", "--max-steps", str(step + 2)]
    assert main(train_flags(data_dir, tmp_path, "--eval-interval", "1", *more)) == 0
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == step + 2
    assert list(tmp_path.glob(".*.tmp")) == []  # swept at the start, none left at the end


def test_resume_right_after_a_killed_overwrite_finds_the_old_run(
    data_dir: Path, tmp_path: Path
) -> None:
    run(tiny(data_dir, tmp_path, max_steps=4))
    set_aside_previous_run(tmp_path)  # the replacing run was killed before its first save
    flags = ["--block-size", "32", "--n-layer", "1", "--n-embd", "32", "--dropout", "0.1"]
    code = main([*train_flags(data_dir, tmp_path, "--resume", "--max-steps", "6"), *flags])
    assert code == 0 and load_checkpoint(tmp_path / "ckpt.pt")["step"] == 6


def test_putting_the_old_run_back_drops_what_the_new_one_wrote(tmp_path: Path) -> None:
    (tmp_path / "ckpt.pt").write_bytes(b"old run, stopped before its first eval: no best.pt")
    assert set_aside_previous_run(tmp_path)
    (tmp_path / "best.pt").write_bytes(b"the new run's, written just before it was killed")
    from jobgpt.resume import settle_previous_run

    assert "previous run is back" in settle_previous_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_a_checkpoint_without_training_state_is_not_resumed_with_a_traceback(
    data_dir: Path, tmp_path: Path
) -> None:
    run(tiny(data_dir, tmp_path, max_steps=2))
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    del ckpt["optimizer"], ckpt["sampler"]
    torch.save(ckpt, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match="cannot be resumed: it lacks optimizer, sampler"):
        Trainer(tiny(data_dir, tmp_path, max_steps=4, resume=True))
