"""The trainer: exact resume, no silent overwrite, refused checkpoints, divergence, bad inputs,
Ctrl-C, and the seed script end to end. Tiny data built by the real stages, tiny models."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import ONE_THREAD, build_data, records, tiny
from test_batching import check_copy_drill

from jobgpt import report
from jobgpt.batching import copy_drills
from jobgpt.checkpoint import load_checkpoint
from jobgpt.cli import main
from jobgpt.config import TrainConfig, make_config
from jobgpt.errors import CheckpointError, ConfigError, DataError
from jobgpt.inputs import resolve_inputs
from jobgpt.optim import lr_at
from jobgpt.resume import train_config
from jobgpt.runtime import is_out_of_memory
from jobgpt.stages import run_stage
from jobgpt.tokenizer import RESERVED_IDS, save_tokenizer, train_tokenizer
from jobgpt.train import oom_error, run
from jobgpt.trainer import Trainer, TrainingDiverged

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "train_gpt.py"


# --- resume ------------------------------------------------------------------------------------


# The modern recipe: its model, Muon (momentum buffers), warmup-stable-decay, document windows.
MODERN = {
    "model": {"arch": "modern"},
    "optimizer": "muon",
    "schedule": "wsd",
    "windows": "documents",
}


@pytest.mark.parametrize("recipe", [{}, MODERN], ids=["reference", "modern"])
def test_n_steps_plus_resume_n_steps_equals_2n_steps(
    data_dir: Path, tmp_path: Path, recipe: dict[str, Any]
) -> None:
    # warmup 100 > the run: capped (to 2 steps), and the cap must not break the exact resume.
    settings = {"max_steps": 12, "warmup_steps": 100, **recipe}
    run(tiny(data_dir, tmp_path / "straight", **settings))

    first = Trainer(tiny(data_dir, tmp_path / "split", **settings))
    first.fit(steps=6)  # a session that ends mid-run (as the time budget or Ctrl-C would)
    resumed = Trainer(tiny(data_dir, tmp_path / "split", resume=True, **settings))
    assert resumed.step == 6
    resumed.fit()

    a, b = records(tmp_path / "straight", "step"), records(tmp_path / "split", "step")
    assert sorted(a) == sorted(b) == list(range(1, 13))
    for step in a:
        assert b[step]["loss"] == pytest.approx(a[step]["loss"], abs=1e-6), step
    ea, eb = records(tmp_path / "straight", "eval"), records(tmp_path / "split", "eval")
    for step in (4, 8, 12):
        assert eb[step]["val_loss"] == pytest.approx(ea[step]["val_loss"], abs=1e-6)
    wa = load_checkpoint(tmp_path / "straight" / "ckpt.pt")["model"]
    wb = load_checkpoint(tmp_path / "split" / "ckpt.pt")["model"]
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=0, atol=1e-6)


def test_bf16_autocast_trains_says_so_and_resumes_exactly(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The bf16 path on any CPU (emulated where bf16 is not native: slower, still correct).
    Weights, gradients and optimizer state stay float32 and autocast rounds the same way on
    every run, so a resumed bf16 run repeats the uninterrupted one exactly, as float32 does."""
    bf16 = {"dtype": "bfloat16", "max_steps": 8}
    with caplog.at_level("INFO", logger="jobgpt"):
        run(tiny(data_dir, tmp_path / "straight", **bf16))
    assert "precision: bfloat16 — --dtype bfloat16 (this CPU" in caplog.text

    fp32 = Trainer(tiny(data_dir, tmp_path / "fp32"))  # the same initial weights, in float32
    first = Trainer(tiny(data_dir, tmp_path / "split", **bf16))  # (seeds torch's RNG afresh)
    assert first.dtype == torch.bfloat16
    assert first.evaluate()["val_loss"] != fp32.evaluate()["val_loss"]  # autocast is on
    first.fit(steps=4)
    Trainer(tiny(data_dir, tmp_path / "split", resume=True, **bf16)).fit()

    a, b = records(tmp_path / "straight", "step"), records(tmp_path / "split", "step")
    assert sorted(a) == sorted(b) == list(range(1, 9))
    assert [b[step]["loss"] for step in a] == [a[step]["loss"] for step in a]
    wa = load_checkpoint(tmp_path / "straight" / "ckpt.pt")["model"]
    wb = load_checkpoint(tmp_path / "split" / "ckpt.pt")["model"]
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=0, atol=0)


def test_resume_keeps_the_checkpoints_settings_unless_a_flag_changes_them(
    data_dir: Path, tmp_path: Path
) -> None:
    run(tiny(data_dir, tmp_path, max_steps=4, lr=2e-3))
    # `--resume` with other defaults (preset m4!) still continues the tiny run as configured...
    typed = {"data_dir": str(data_dir), "out_dir": str(tmp_path), "resume": True, "device": "cpu"}
    trainer = Trainer(train_config({**typed, "max_steps": 6}))
    assert trainer.cfg.lr == 2e-3 and trainer.model_config.n_embd == 32
    assert trainer.cfg.max_steps == 6  # ...while a flag that was given wins
    # Architecture flags that contradict the checkpoint are refused, by name, however the
    # config was built.
    with pytest.raises(ConfigError, match="--n-layer 3 conflicts"):
        Trainer(train_config({**typed, "model": {"n_layer": 3}}))
    with pytest.raises(ConfigError, match="--n-layer 3 conflicts"):
        Trainer(tiny(data_dir, tmp_path, resume=True, model={"n_layer": 3}))


def test_a_typed_flag_equal_to_the_preset_default_overrides_the_checkpoint(
    data_dir: Path, tmp_path: Path
) -> None:
    run(tiny(data_dir, tmp_path, max_steps=4, lr=1e-3, weight_decay=0.05))
    common = ["--data-dir", str(data_dir), "--out-dir", str(tmp_path), "--device", "cpu"]
    # 3e-4 and 0.1 are the m4 preset's defaults: typed, they still win over the checkpoint.
    flags = ["--resume", "--max-steps", "5", "--lr", "3e-4", "--weight-decay", "0.1"]
    assert main(["train", *common, *flags]) == 0
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt["step"] == 5
    assert ckpt["train_config"]["lr"] == 3e-4 and ckpt["schedule"]["lr"] == 3e-4
    assert ckpt["train_config"]["weight_decay"] == 0.1
    assert ckpt["train_config"]["batch_size"] == 4  # untyped: still the checkpoint's
    # A typed architecture flag equal to the m4 default but not to the checkpoint is refused.
    assert main(["train", *common, "--resume", "--n-layer", "6"]) == 1


def test_resume_reports_the_checkpoints_preset_and_refuses_another(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run(tiny(data_dir, tmp_path, max_steps=2))
    bare = {"data_dir": str(data_dir), "out_dir": str(tmp_path), "device": "cpu", "resume": True}
    with caplog.at_level("INFO", logger="jobgpt"):
        trainer = Trainer(train_config({**bare, "max_steps": 3}))  # no --preset
    assert f"resuming {tmp_path}/ckpt.pt at step 2 (preset tiny)" in caplog.text
    assert trainer.cfg.preset == "tiny"
    with pytest.raises(ConfigError, match="--preset m4 conflicts .* preset tiny") as err:
        train_config({**bare, "preset": "m4"})
    assert "drop --preset" in err.value.hint and "--lr" in err.value.hint


def test_a_config_built_in_code_resumes_with_every_setting_it_has(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run(tiny(data_dir, tmp_path, max_steps=4, lr=1e-3))
    # notebook style: a config built (and edited) in code is taken as it is
    edited = replace(tiny(data_dir, tmp_path, resume=True), max_steps=6, lr=5e-4)
    with caplog.at_level("INFO", logger="jobgpt"):
        resumed = Trainer(edited)
    assert (resumed.cfg.max_steps, resumed.cfg.lr) == (6, 5e-4)
    assert "lr 0.001 -> 0.0005" in caplog.text and "max_steps 4 -> 6" in caplog.text


def test_checkpoints_with_settings_this_version_lacks_still_resume(
    data_dir: Path, tmp_path: Path
) -> None:
    run(tiny(data_dir, tmp_path, max_steps=4, lr=1e-3))
    path = tmp_path / "ckpt.pt"
    old = torch.load(path, map_location="cpu", weights_only=True)
    old["train_config"]["explicit"] = ["lr"]  # a field earlier versions saved
    del old["train_config"]["grad_clip"]  # a field they may not have had
    torch.save(old, path)
    typed = {"data_dir": str(data_dir), "out_dir": str(tmp_path), "resume": True, "lr": 3e-3}
    trainer = Trainer(train_config({**typed, "device": "cpu", "max_steps": 6}))
    assert trainer.step == 4 and trainer.cfg.lr == 3e-3 and trainer.cfg.batch_size == 4


def test_block_size_larger_than_the_models_on_resume_is_refused(
    data_dir: Path, tmp_path: Path
) -> None:
    run(tiny(data_dir, tmp_path, max_steps=2))
    with pytest.raises(ConfigError, match="block_size 32") as err:
        Trainer(tiny(data_dir, tmp_path, resume=True, model={"block_size": 64}))
    assert "--block-size 64" in err.value.message


def test_a_corpus_directory_holding_a_training_run_skips_its_files(
    data_dir: Path, tmp_path: Path
) -> None:
    run(tiny(data_dir, tmp_path / "run", max_steps=2, eval_interval=1))
    assert {"ckpt.pt", "best.pt", "metrics.jsonl", "loss.png"} <= set(os.listdir(tmp_path / "run"))
    shutil.copy(data_dir / "samples.txt", tmp_path)
    # `--input <dir>` beside checkpoints/metrics (as in `jobgpt demo`'s runs/demo) reads the corpus.
    assert resolve_inputs([str(tmp_path)]) == [tmp_path / "samples.txt"]


# --- never lose or silently reuse work ---------------------------------------------------------


def test_a_new_run_never_overwrites_an_existing_one(data_dir: Path, tmp_path: Path) -> None:
    run(tiny(data_dir, tmp_path, max_steps=4))
    before = (tmp_path / "ckpt.pt").read_bytes()
    with pytest.raises(CheckpointError, match="already holds a training run") as err:
        Trainer(tiny(data_dir, tmp_path, max_steps=4))
    assert "--resume" in err.value.hint and "--overwrite" in err.value.hint
    assert (tmp_path / "ckpt.pt").read_bytes() == before

    run(tiny(data_dir, tmp_path, max_steps=2, overwrite=True))  # explicit: starts over
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 2
    assert max(records(tmp_path, "step")) == 2  # the old run's metrics are gone too


def test_resume_without_a_checkpoint_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        Trainer(tiny(data_dir, tmp_path, resume=True))


def test_a_checkpoint_from_another_tokenizer_is_refused(data_dir: Path, tmp_path: Path) -> None:
    run(tiny(data_dir, tmp_path / "run", max_steps=2))
    other = build_data(tmp_path / "other", vocab_size=450)
    with pytest.raises(CheckpointError, match="another|trained with tokenizer") as err:
        Trainer(tiny(other, tmp_path / "run", resume=True))
    saved = load_checkpoint(tmp_path / "run" / "ckpt.pt")["tokenizer"]
    meta = json.loads((other / "meta.json").read_text(encoding="utf-8"))
    assert saved["sha256"][:12] in err.value.message
    assert meta["tokenizer"]["sha256"][:12] in err.value.message
    assert "450" in err.value.message and "400" in err.value.message


def test_divergence_stops_with_the_last_good_checkpoint_intact(
    data_dir: Path, tmp_path: Path
) -> None:
    run(tiny(data_dir, tmp_path, max_steps=4))
    before = (tmp_path / "ckpt.pt").read_bytes()
    with pytest.raises(TrainingDiverged) as err:
        run(tiny(data_dir, tmp_path, max_steps=40, lr=1e6, resume=True))
    assert "step 4 is kept" in err.value.message
    assert "--lr" in err.value.hint and "--grad-clip" in err.value.hint
    assert (tmp_path / "ckpt.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 4


def test_a_resume_on_another_number_of_processes_is_reported_with_a_warning() -> None:
    values = {"preset": "tiny", "out_dir": "runs/x", "max_steps": 50, "eval_interval": 25}
    cfg = make_config(TrainConfig, values)
    facts = report.RunFacts(
        device="cpu (2 threads)",
        world_size=1,
        dtype="float32",
        dtype_why="--dtype float32 (no autocast)",
        compile_why="off (--compile off)",
        params=1_234_567,
        tokens_per_step=1024,
        warmup=10,
        warmup_cap_percent=20,
        train_tokens=100_000,
        val_tokens=10_000,
        eval_windows=(8, 8),
        val_bytes=20_000,
        resumed_step=40,
        checkpoint_world_size=2,
        changes=("max_steps 40 -> 50",),
    )
    lines, warnings = report.startup_report(cfg, replace(cfg.model, vocab_size=400), facts)
    text = "\n".join(lines)
    assert lines[0] == "resuming runs/x/ckpt.pt at step 40 (preset tiny)"
    assert "1.23 M parameters" in text and "vocab 400 (the checkpoint's)" in text
    assert "changed from the checkpoint by flags: max_steps 40 -> 50" in text
    assert "eval: every 25 steps on 8 train / 8 val windows (fixed; 20,000 val bytes)" in text
    assert any("trained with 2 process(es), this run has 1" in w for w in warnings)


def test_the_divergence_and_abrupt_end_texts_name_what_survives() -> None:
    cfg = make_config(TrainConfig, {"lr": 1e-2, "out_dir": "runs/x"})
    message, hint = report.divergence_text(cfg, float("inf"), 7, saved_step=-1, float16=True)
    assert "the loss became inf by step 7" in message and "no checkpoint was written" in message
    assert "--lr 3.0e-04" in hint and "--resume" not in hint and "float16 overflows" in hint
    message, hint = report.divergence_text(cfg, float("nan"), 9, saved_step=8, float16=False)
    assert "runs/x/ckpt.pt from step 8 is kept unchanged" in message
    assert "--resume to continue" in hint and "float16" not in hint
    assert report.kept_text(cfg, -1) == "no checkpoint was written yet"
    assert report.kept_text(cfg, 8).endswith(
        "continue with `uv run python scripts/train_gpt.py --resume --out-dir runs/x`"
    )


def test_overfitting_is_named_and_stops_the_run_with_the_best_model_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Four documents, a model that can memorise them: val turns up while train falls."""
    corpus, tok = str(tmp_path / "samples.txt"), str(tmp_path / "tokenizer.json")
    run_stage("demo-data", {"out": corpus, "n": 4})
    run_stage("tokenizer", {"input": [corpus], "vocab_size": 300, "out": tok})
    run_stage(
        "dataset",
        {
            "input": [corpus],
            "tokenizer": tok,
            "out_dir": str(tmp_path),
            "block_size": 32,
            "val_fraction": 0.3,
        },
    )
    cfg = tiny(
        tmp_path,
        tmp_path / "out",
        max_steps=3000,
        eval_interval=10,
        lr=1e-2,
        log_interval=0,
        early_stop=True,
        model={"dropout": 0.0, "n_embd": 128, "n_layer": 2},
    )
    with caplog.at_level("WARNING", logger="jobgpt"):
        summary = run(cfg)
    assert summary["stopped"].startswith("early stop") and summary["step"] < 3000
    assert "overfitting (과적합)" in caplog.text
    best = load_checkpoint(tmp_path / "out" / "best.pt")
    assert best["step"] == summary["best_step"] < summary["step"]
    assert load_checkpoint(tmp_path / "out" / "ckpt.pt")["step"] == summary["step"]
    assert summary["final_val_loss"] > summary["best_val_loss"]
    best = tmp_path / "out" / "best.pt"
    assert (
        f"use best.pt: `uv run python scripts/generate.py --checkpoint {best}`"
        in (summary["summary"])
    )


# --- bad inputs --------------------------------------------------------------------------------


def test_the_data_dirs_own_tokenizer_wins_over_a_stale_relative_path(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # meta.json recorded "data/tokenizer.json"; run from a directory whose data/ holds another
    # tokenizer: the one beside the bins (same fingerprint) is the one to train with.
    moved = tmp_path / "moved"
    shutil.copytree(data_dir, moved)
    meta = json.loads((moved / "meta.json").read_text())
    meta["tokenizer"]["path"] = "data/tokenizer.json"
    (moved / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "data").mkdir()
    other = train_tokenizer(["전혀 다른 말뭉치 another corpus"] * 50, 300)
    save_tokenizer(other, tmp_path / "data" / "tokenizer.json")
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(tiny(moved, tmp_path / "out"))
    assert trainer.tokenizer_sha256 == meta["tokenizer"]["sha256"]


def test_missing_bins_name_the_file(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="meta.json is missing"):
        Trainer(tiny(tmp_path / "nowhere", tmp_path / "out"))
    partial = tmp_path / "partial"
    shutil.copytree(data_dir, partial)
    (partial / "val.bin").unlink()
    with pytest.raises(DataError, match="val.bin is missing"):
        Trainer(tiny(partial, tmp_path / "out"))


def test_val_shorter_than_one_window_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    val_tokens = json.loads((data_dir / "meta.json").read_text())["splits"]["val"]["tokens"]
    with pytest.raises(DataError, match="val.bin has .* tokens but block_size") as err:
        Trainer(tiny(data_dir, tmp_path, model={"block_size": val_tokens}))
    assert "--block-size" in err.value.hint
    assert not (tmp_path / "ckpt.pt").exists()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--lr", "fast"], "--lr: invalid float value"),
        (["--max-steps", "1.5"], "--max-steps: invalid int value"),
        (["--batch-size", "many"], "--batch-size: invalid int value"),
    ],
)
def test_non_numeric_flags_are_rejected_by_the_cli(flags, needle, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert needle in err
    # the house format: the problem and where to look, not argparse's usage dump
    assert err.startswith("error: ") and "fix: see `jobgpt train --help`" in err
    assert "usage:" not in err


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--copy-share", "1"], "--copy-share must be in [0, 1), got 1.0"),
        (["--copy-warmup", "-1"], "--copy-warmup must be >= 0, got -1"),
        (["--copy-warmup", "50", "--max-steps", "50"], "--copy-warmup (50) must be below"),
    ],
)
def test_out_of_range_values_are_config_errors_through_the_cli(
    data_dir: Path, tmp_path: Path, capsys, flags: list[str], needle: str
) -> None:
    code = main(["train", "--data-dir", str(data_dir), "--out-dir", str(tmp_path), *flags])
    err = capsys.readouterr().err
    assert code == 1 and f"error: {needle}" in err and "fix:" in err


@pytest.mark.parametrize(
    ("model", "needle", "hint"),
    [
        ({"n_head": 5}, "--n-embd 384 is not divisible by --n-head 5", "--n-head 4 or 6"),
        ({"n_embd": 65}, "--n-embd 65 is not divisible by --n-head 2", "--n-head 1 or 5"),
        ({"n_layer": 0}, "--n-layer must be at least 1, got 0", "positive"),
        ({"n_head": 0}, "--n-head must be at least 1, got 0", "positive"),
        ({"n_embd": 0}, "--n-embd must be at least 1, got 0", "positive"),
        ({"block_size": 0}, "--block-size must be at least 1, got 0", "positive"),
    ],
)
def test_impossible_architectures_are_config_errors(model: dict, needle: str, hint: str) -> None:
    preset = "tiny" if "n_embd" in model else "m4"  # QA: --preset tiny --n-embd 65, --n-head 5
    with pytest.raises(ConfigError) as err:
        make_config(TrainConfig, {"preset": preset, "model": model})
    assert needle in err.value.message and hint in err.value.hint


def test_impossible_heads_through_the_cli_need_no_traceback(tmp_path: Path, capsys) -> None:
    code = main(["train", "--out-dir", str(tmp_path), "--n-head", "5"])
    err = capsys.readouterr().err
    assert code == 1 and "error: --n-embd 384 is not divisible by --n-head 5" in err
    assert "fix: use --n-head 4 or 6" in err and "--n-embd 380 or 385" in err


@pytest.mark.parametrize("schedule", ["wsd", "cosine"])
def test_a_time_budgeted_run_ends_at_the_floor_learning_rate(
    data_dir: Path, tmp_path: Path, schedule: str
) -> None:
    """--max-minutes is a whole run, not a cut one: the schedule's progress is the share of the
    budget spent, so the lr reaches its floor as the minutes run out, whatever the step count."""
    cfg = tiny(data_dir, tmp_path, max_steps=10**6, max_minutes=0.05, schedule=schedule)
    cfg = replace(cfg, eval_interval=10**6, log_interval=1)
    summary = run(cfg)
    lrs = [r["lr"] for _, r in sorted(records(tmp_path, "step").items())]
    assert "time budget" in summary["stopped"] and len(lrs) < cfg.max_steps
    floor = cfg.lr * cfg.min_lr_ratio
    assert lrs[-1] < floor + 0.1 * (cfg.lr - floor)  # the last step ran at (nearly) the floor
    after_warmup = lrs[cfg.warmup_steps :]
    assert after_warmup[0] == pytest.approx(cfg.lr, rel=0.05)  # the peak, first
    assert all(b <= a for a, b in zip(after_warmup, after_warmup[1:], strict=False))


class Ticking:
    """A clock that moves `tick` seconds each time it is read: a session's minutes pass in a
    few steps, the same on every machine."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_a_resumed_time_budgeted_run_goes_on_down_to_the_floor_not_back_up(
    data_dir: Path, tmp_path: Path
) -> None:
    """A budgeted run cut off mid-warmdown (Ctrl-C, a crash) and resumed continues its
    warmdown from where it was, over the new budget, instead of starting at the peak again."""
    settings = {"max_steps": 10**6, "max_minutes": 1.0, "schedule": "wsd", "warmdown": 0.8}
    first = Trainer(replace(tiny(data_dir, tmp_path, **settings), log_interval=1))
    first.pace.clock = Ticking(1.0)
    first.fit(steps=12)  # the session ends part-way through its minute
    reached = load_checkpoint(tmp_path / "ckpt.pt")["clock_progress"]
    assert 0.2 < reached <= first.progress < 1.0 and first.lr < first.cfg.lr  # in the warmdown
    resumed = Trainer(replace(tiny(data_dir, tmp_path, resume=True, **settings), log_interval=1))
    assert resumed.progress == reached  # from the checkpoint
    resumed.pace.clock = Ticking(1.0)
    resumed.fit()
    lrs = [r["lr"] for _, r in sorted(records(tmp_path, "step").items())]
    assert all(b <= a for a, b in zip(lrs[2:], lrs[3:], strict=False))  # never back up
    floor = resumed.cfg.lr * resumed.cfg.min_lr_ratio
    assert lrs[-1] < floor + 0.1 * (resumed.cfg.lr - floor)  # and down to the floor at the end


def test_copy_warmup_drills_first_then_text_evaluated_only_after_and_resumes_exactly(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """--copy-warmup N: the first N steps train on copying drills, the rest on text (with
    --copy-share of the rows still drills); evals (and the overfitting judge) see only
    text-trained models; a resume inside the drills goes on exactly as an uninterrupted run."""
    settings = {"max_steps": 10, "copy_warmup": 5, "copy_share": 0.5, **MODERN}
    with caplog.at_level("INFO", logger="jobgpt"):
        straight = run(tiny(data_dir, tmp_path / "straight", **settings))
    assert "copying drills" in caplog.text and "copy warm-up done at step 5" in caplog.text
    assert sorted(records(tmp_path / "straight", "eval")) == [8, 10]  # none during the drills
    assert straight["step"] == 10 and straight["best_step"] in (8, 10)

    first = Trainer(tiny(data_dir, tmp_path / "split", **settings))
    x, y = first.draw_windows(2, first.sampler)  # step 0: a drill, the repeat scored alone
    for row_x, row_y in zip(x, y, strict=True):
        check_copy_drill(row_x, row_y)
    first.sampler = np.random.default_rng(first.cfg.seed)  # as if nothing had been drawn
    first.fit(steps=3)
    resumed = Trainer(tiny(data_dir, tmp_path / "split", resume=True, **settings))
    resumed.fit()
    wa = load_checkpoint(tmp_path / "straight" / "ckpt.pt")["model"]
    wb = load_checkpoint(tmp_path / "split" / "ckpt.pt")["model"]
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=0, atol=1e-6)
    resumed.step = 5
    x, y = resumed.draw_windows(4, resumed.sampler)  # from step 5 on: text, half the rows drills
    assert sorted((y == -1).any(axis=1).tolist()) == [False, False, True, True]


def test_copy_drills_teach_a_small_model_to_copy_what_it_was_shown(
    data_dir: Path, tmp_path: Path
) -> None:
    """What the drills are for: after 100 steps of them a small tied model predicts the repeat
    of tokens it has never seen together; trained on text instead, it cannot."""
    shape = {"arch": "modern", "tied_head": True, "block_size": 64, "n_layer": 2, "n_embd": 64}
    settings = {"model": {**shape, "dropout": 0.0}, "optimizer": "muon", "schedule": "wsd"}
    settings |= {"batch_size": 8, "warmup_steps": 10, "eval_interval": 1000, "log_interval": 0}
    repeat_losses = {}
    for drills in (100, 0):
        cfg = tiny(data_dir, tmp_path / str(drills), copy_warmup=drills, max_steps=101, **settings)
        trainer = Trainer(cfg)
        trainer.fit()
        ids = (RESERVED_IDS, trainer.bins.vocab_size)
        x, y = copy_drills(16, 64, ids, np.random.default_rng(123))  # rows not trained on
        with torch.no_grad():
            repeat_losses[drills] = trainer.raw_model(torch.as_tensor(x), torch.as_tensor(y))[1]
    assert repeat_losses[100] < 0.5 < 2.0 < repeat_losses[0], repeat_losses


def test_warmup_longer_than_the_run_is_capped_so_the_lr_is_reached(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(TrainConfig, {"lr": 1e-3, "warmup_steps": 100, "max_steps": 20})
    lrs = [lr_at(step, cfg) for step in range(20)]
    assert max(lrs) == pytest.approx(1e-3)  # uncapped, it would end at 2e-4
    assert lrs.index(max(lrs)) == 3  # four warmup steps: a fifth of the run
    with caplog.at_level("INFO", logger="jobgpt"):
        Trainer(tiny(data_dir, tmp_path, max_steps=20, warmup_steps=100))
    assert "warmup 4 (--warmup-steps 100 capped at 20% of the 20 steps" in caplog.text


def test_the_default_steps_line_states_this_datas_epochs(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="jobgpt"):
        trainer = Trainer(tiny(data_dir, tmp_path, max_steps=TrainConfig().max_steps))
    epochs = trainer.tokens_per_step * 2000 / len(trainer.bins.tokens["train"])
    assert f"steps: 2,000 (default) = {epochs:.1f} epochs of this data" in caplog.text
    assert f"= {epochs:.1f} epochs;" in caplog.text  # the plan line agrees
    assert "demo corpus" not in caplog.text


def test_the_verdict_gives_the_next_command_and_a_finished_run_says_so(
    data_dir: Path, tmp_path: Path, capsys
) -> None:
    paths = ["--data-dir", str(data_dir), "--out-dir", str(tmp_path)]
    tiny_flags = ["--preset", "tiny", "--device", "cpu", "--block-size", "32", "--n-embd", "32"]
    assert main(["train", *paths, *tiny_flags, "--max-steps", "4", "--eval-interval", "2"]) == 0
    out = capsys.readouterr().out
    more = f"--resume --max-steps 8 --data-dir {data_dir} --out-dir {tmp_path}`"
    assert out.startswith("train: step 4 — best val loss") and more in out, out
    assert "barely learned anything" in out  # 4 steps: near ln(vocab 400)
    assert main(["train", *paths, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "this run already finished at step 4; pass a larger --max-steps with --resume" in out
    assert "(e.g. --resume --max-steps 8). Its verdict: best val loss" in out


def test_schedule_warms_up_then_decays_to_the_floor() -> None:
    cfg = make_config(
        TrainConfig, {"lr": 1e-3, "warmup_steps": 10, "max_steps": 110, "min_lr_ratio": 0.1}
    )
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx(0.55e-3)  # half way down the cosine
    assert lr_at(110, cfg) == pytest.approx(1e-4)
    assert lr_at(500, cfg) == pytest.approx(1e-4)  # beyond max_steps: stays at the floor


def test_weight_decay_applies_to_matrices_only(data_dir: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny(data_dir, tmp_path))
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] > 0 and no_decay["weight_decay"] == 0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"])  # LayerNorm gains, biases
    n = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert n == trainer.raw_model.num_params()  # every parameter once (the tied head once)


# --- the real entry points, in subprocesses ----------------------------------------------------


def _workdir_with_data(data_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(data_dir, tmp_path / "data")
    return tmp_path


def test_seed_script_end_to_end(data_dir: Path, tmp_path: Path) -> None:
    cwd = _workdir_with_data(data_dir, tmp_path)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--preset", "tiny", "--max-steps", "20"],
        cwd=cwd,
        env=ONE_THREAD,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = cwd / "checkpoints"
    for name in ("ckpt.pt", "best.pt", "metrics.jsonl", "loss.png"):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_checkpoint(out / "ckpt.pt")["step"] == 20
    # The start-up report and the final verdict, where a person looks for them.
    for needle in (
        "device: cpu",
        "precision:",
        "parameters",
        "tokens/step",
        "epochs",
        "val windows",
    ):
        assert needle in result.stderr, needle
    assert result.stdout.startswith("train: step 20") and "best val loss" in result.stdout


@pytest.mark.parametrize("signals", [1, 2])
def test_ctrl_c_saves_and_exits_cleanly(data_dir: Path, tmp_path: Path, signals: int) -> None:
    """One Ctrl-C; and two back to back, as `uv run` without a terminal delivers one (it
    forwards the SIGINT that the child also gets): both save ckpt.pt and exit 130."""
    cwd = _workdir_with_data(data_dir, tmp_path)
    out_dir = "checkpoints" if signals == 1 else "runs/x"  # the hint names a non-default dir
    flags = [
        "--out-dir",
        out_dir,
        "--preset",
        "tiny",
        "--max-steps",
        "100000",
        "--eval-interval",
        "100000",
        "--log-interval",
        "1",
        "--block-size",
        "32",
        "--n-embd",
        "32",
    ]
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *flags],
        cwd=cwd,
        env=ONE_THREAD,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = cwd / out_dir / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    if signals == 2:  # a few ms later, as uv forwards it (signals pending together merge)
        time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "stopped by SIGINT" in stderr and "Traceback" not in stderr
    resume = "--resume" if signals == 1 else "--resume --out-dir runs/x`"
    assert f"saved {out_dir}/ckpt.pt" in stderr and resume in stderr
    saved = load_checkpoint(cwd / out_dir / "ckpt.pt")
    assert saved["step"] >= 3
    assert max(records(cwd / out_dir, "step")) <= saved["step"]


def test_sigterm_stops_after_the_step_and_saves(data_dir: Path, tmp_path: Path) -> None:
    """What a cluster scheduler (or torchrun) sends; here delivered to this very process."""
    trainer = Trainer(tiny(data_dir, tmp_path, max_steps=100_000, eval_interval=100_000))
    before = signal.getsignal(signal.SIGTERM)  # (cli.main, run earlier in-process, sets one)

    def terminate_after_three_steps() -> None:
        while trainer.step < 3:
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_after_three_steps, daemon=True).start()
    summary = trainer.fit()
    assert summary["stopped"] == "stopped by SIGTERM"
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == trainer.step >= 3
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored


@pytest.mark.parametrize(
    ("batch", "accum", "suggested"),
    [
        (16, 1, "--batch-size 8 --grad-accum 2"),
        (12, 2, "--batch-size 6 --grad-accum 4"),
        (7, 1, "--batch-size 1 --grad-accum 7"),
    ],
)
def test_out_of_memory_suggests_the_same_effective_batch_in_smaller_pieces(
    batch: int, accum: int, suggested: str
) -> None:
    cfg = make_config(TrainConfig, {"batch_size": batch, "grad_accum": accum})
    err = oom_error(cfg, torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to ..."))
    assert f"--batch-size {batch} --grad-accum {accum}" in err.message
    assert suggested in err.hint and f"effective batch of {batch * accum} windows" in err.hint
    assert "--block-size" in err.hint


def test_cpu_out_of_memory_is_recognised_with_the_same_advice() -> None:
    """QA: --preset tiny --block-size 50000 ended in DefaultCPUAllocator's RuntimeError."""
    with pytest.raises(RuntimeError) as raised:  # the real allocator's message, at no cost
        torch.empty(2**62, dtype=torch.uint8)
    assert "DefaultCPUAllocator" in str(raised.value)
    assert is_out_of_memory(raised.value)
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    cfg = make_config(TrainConfig, {"preset": "tiny", "device": "cpu"})
    err = oom_error(cfg, raised.value)
    assert err.message.startswith("out of memory on the CPU (RAM) with --batch-size 8")
    assert "--batch-size 4 --grad-accum 2" in err.hint and "--block-size (now 128)" in err.hint


def test_out_of_memory_with_a_huge_batch_suggests_one_that_fits() -> None:
    """QA: --batch-size 100000 was told to halve it (still ~100x too big)."""
    from jobgpt.report import oom_text, window_bytes

    cfg = make_config(TrainConfig, {"batch_size": 100_000})
    free = 8 * 10**9
    message, hint = oom_text(cfg, "CUDA out of memory", gpu=True, free_bytes=free)
    fits = int(free * 0.6 // window_bytes(cfg))
    assert 1 <= fits < 100 and hint.startswith(f"use --batch-size {fits}:")
    assert "100,000 windows per step is far more than it needs" in hint
