"""The reference pipeline's four commands, run as a new user runs them, in an empty directory."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def run_script(name: str, *flags: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *flags],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.slow
def test_four_reference_scripts_from_an_empty_directory(tmp_path: Path) -> None:
    # Stages 1 and 2 exactly as the reference doc writes them: no flags at all.
    tok = run_script("train_tokenizer.py", cwd=tmp_path)
    assert tok.returncode == 0, tok.stderr
    assert (tmp_path / "data/samples.txt").is_file()  # the demo corpus, written on first use
    assert "demo" in tok.stderr.lower()
    assert (tmp_path / "data/tokenizer.json").is_file()

    data = run_script("build_bin_dataset.py", cwd=tmp_path)
    assert data.returncode == 0, data.stderr
    for name in ("train.bin", "val.bin", "meta.json"):
        assert (tmp_path / "data" / name).is_file()
    assert np.fromfile(tmp_path / "data/val.bin", dtype=np.uint16).size > 0

    # Stages 3 and 4 with the reference paths, shortened so the test stays fast.
    train = run_script("train_gpt.py", "--preset", "tiny", "--max-steps", "5", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    for name in ("ckpt.pt", "best.pt", "metrics.jsonl", "loss.png"):
        assert (tmp_path / "checkpoints" / name).is_file()

    gen = run_script("generate.py", "--max-new-tokens", "20", "--num-samples", "2", cwd=tmp_path)
    assert gen.returncode == 0, gen.stderr
    assert gen.stdout.strip()  # generated text goes to stdout, logs to stderr
    assert "\ufffd" not in gen.stdout
