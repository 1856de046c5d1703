"""Multi-process training through torchrun: 2 gloo processes on the CPU, interrupted and resumed,
must train exactly like one process with their combined (global) batch, uninterrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed
from conftest import ONE_THREAD, records, tiny

from jobgpt.train import run

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="this torch build has no torch.distributed"
)


# float32, as `tiny` has it: bf16 autocast (`auto` on CPUs with native bf16) rounds a batch of 2
# windows per process differently from one of 4, and this test compares losses to 1e-5.
FLAGS = "--preset tiny --device cpu --dtype float32 --eval-interval 3 --log-interval 1".split()


# Under torchrun, each process: one session of 4 steps that ends mid-run (as a time budget would),
# then `jobgpt train --resume` to step 7 — both in one launch, as process start-up dominates.
DRIVER = """
import sys
from jobgpt.cli import main
from jobgpt.config import TrainConfig, make_config
from jobgpt.trainer import Trainer

flags = sys.argv[1:]
Trainer(make_config(TrainConfig, {"device": "cpu", "data_dir": flags[flags.index("--data-dir") + 1],
    "out_dir": flags[flags.index("--out-dir") + 1], "preset": "tiny", "batch_size": 2,
    "dtype": "float32", "max_steps": 7, "eval_interval": 3, "log_interval": 1, "warmup_steps": 2,
    "eval_windows": 4, "model": MODEL, **RECIPE})).fit(steps=4)
sys.exit(main(["train", *flags, "--resume"]))
"""
MODEL = {"block_size": 32, "n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.0}
# The modern recipe: Muon's update is computed from the DDP-averaged gradients on every rank,
# and document windows are drawn from the same global batch; both must match one process.
RECIPES = {
    "reference": ({}, {}),
    "modern": (
        {"arch": "modern"},
        {"optimizer": "muon", "schedule": "wsd", "windows": "documents"},
    ),
}


def torchrun(
    script: Path, data_dir: Path, out_dir: Path, extra: list[str]
) -> subprocess.CompletedProcess:
    env = ONE_THREAD  # 2 processes on 2 cores: no oversubscription
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        *FLAGS,
        "--batch-size",
        "2",
        "--max-steps",
        "7",
        "--data-dir",
        str(data_dir),
        "--out-dir",
        str(out_dir),
        *extra,
    ]
    # Own process group: if it hangs, the timeout kills torchrun *and* its workers.
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun hung; its last output:\n{stderr[-3000:]}")
    result = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_two_processes_equal_one_process_with_the_global_batch(
    data_dir: Path, tmp_path: Path, recipe: str
) -> None:
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    model_over, train_over = RECIPES[recipe]
    model = {**MODEL, **model_over}
    driver = tmp_path / "driver.py"
    script = DRIVER.replace("MODEL", repr(model)).replace("RECIPE", repr(train_over))
    driver.write_text(script, encoding="utf-8")
    flags = [x for k, v in {**model_over, **train_over}.items() for x in (f"--{k}", v)]
    result = torchrun(driver, data_dir, ddp, flags)

    common = {"model": model, "batch_size": 4, "eval_interval": 3, "warmup_steps": 2, **train_over}
    run(tiny(data_dir, single, max_steps=7, **common))  # one process, uninterrupted

    a, b = records(single, "step"), records(ddp, "step")
    assert sorted(a) == sorted(b) == list(range(1, 8))
    for step in a:
        assert b[step]["loss"] == pytest.approx(a[step]["loss"], rel=1e-5), step
    ea, eb = records(single, "eval"), records(ddp, "eval")
    for step in ea:  # (the DDP run also evaluated at step 4, where its first session ended)
        assert eb[step]["val_loss"] == pytest.approx(ea[step]["val_loss"], rel=1e-5), step

    # One voice: only rank 0 reports and prints the verdict.
    assert result.stderr.count("resuming ") == 1 and "x 2 process(es)" in result.stderr
    assert result.stdout.count("train: step 7") == 1
    lines = (ddp / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len({(r["kind"], r["step"]) for r in map(json.loads, lines)})


# A time-budgeted run under torchrun, each rank's clock running at its own pace (as real ones
# drift): the schedule's progress and the stop must still be one for all ranks, or each would
# step its replica with its own lr and the replicas would drift apart.
BUDGET_DRIVER = """
import hashlib, sys
from jobgpt.config import TrainConfig, make_config
from jobgpt.trainer import Trainer

flags = sys.argv[1:]
trainer = Trainer(make_config(TrainConfig, {"device": "cpu", "preset": "tiny", "batch_size": 2,
    "data_dir": flags[flags.index("--data-dir") + 1],
    "out_dir": flags[flags.index("--out-dir") + 1],
    "dtype": "float32", "max_steps": 10**6, "max_minutes": 1.0, "schedule": "wsd",
    "warmup_steps": 2, "eval_interval": 10**6, "model": MODEL}))

class Ticking:
    def __init__(self, tick):
        self.now, self.tick = 0.0, tick
    def __call__(self):
        self.now += self.tick
        return self.now

trainer.pace.clock = Ticking(1.0 + trainer.dist.rank)
trainer.fit()
weights = b"".join(p.detach().numpy().tobytes() for p in trainer.raw_model.parameters())
print("rank", trainer.dist.rank, "step", trainer.step, hashlib.sha256(weights).hexdigest())
trainer.close()
"""


def test_ranks_agree_on_a_time_budgets_lr_and_end(data_dir: Path, tmp_path: Path) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(BUDGET_DRIVER.replace("MODEL", repr(MODEL)), encoding="utf-8")
    result = torchrun(driver, data_dir, tmp_path / "run", [])
    ranks = sorted(line.split()[1:] for line in result.stdout.splitlines() if line[:5] == "rank ")
    assert [r[0] for r in ranks] == ["0", "1"]
    assert ranks[0][1:] == ranks[1][1:]  # the same number of steps and the same weights
    assert 1 < int(ranks[0][2]) < 60  # stopped by the (faster) clock, not by max_steps
