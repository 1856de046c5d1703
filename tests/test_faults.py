"""Faults a careful user meets: pipes that close, full and read-only disks, outputs of the wrong
kind, unreadable inputs. Each ends in a one-paragraph error (or, for a closed pipe, quietly),
never a traceback, and never with a half-written output."""

from __future__ import annotations

import builtins
import errno
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from jobgpt.bins import TokenBins
from jobgpt.checkpoint import save_checkpoint
from jobgpt.cli import main
from jobgpt.config import DatasetConfig, ModelConfig
from jobgpt.files import OutputBusy, exclusive, sweep_temp_files
from jobgpt.model import GPT
from jobgpt.tokenizer import save_tokenizer, tokenizer_sha256, train_tokenizer

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["서울에서 React 개발자를 채용합니다. 경력 3년 이상.", "부산 물류센터 관리자 모집"] * 20


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model with a real tokenizer: it writes plenty of (random) text."""
    tok = train_tokenizer(TEXTS, vocab_size=300)
    model = GPT(ModelConfig(vocab_size=300, block_size=32, n_layer=1, n_head=2, n_embd=32))
    path = tmp_path_factory.mktemp("ckpt") / "ckpt.pt"
    info = {"json": tok.to_str(), "sha256": tokenizer_sha256(tok), "vocab_size": 300}
    payload = {"model_config": asdict(model.config), "model": model.state_dict(), "tokenizer": info}
    save_checkpoint(payload, path)
    return path


def generate(checkpoint: Path, shell_tail: str) -> subprocess.CompletedProcess:
    script = REPO / "scripts" / "generate.py"
    flags = f"--checkpoint {checkpoint} --max-new-tokens 300 --num-samples 2 --device cpu"
    return subprocess.run(
        f"{sys.executable} {script} {flags} {shell_tail}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        encoding="utf-8",
        errors="replace",  # `head -c` may cut a character in half
        timeout=120,
    )


def test_a_reader_that_stops_early_ends_generation_quietly(checkpoint: Path) -> None:
    result = generate(checkpoint, "| head -c 10; exit ${PIPESTATUS[0]}")
    assert result.returncode == 141  # 128 + SIGPIPE, as Unix tools end
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
    assert len(result.stdout) <= 10


def test_closed_stdout_is_a_clear_error(checkpoint: Path) -> None:
    result = generate(checkpoint, ">&-")
    assert result.returncode == 1
    assert "error: standard output is closed" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_a_full_output_device_is_a_clear_error(checkpoint: Path) -> None:
    result = generate(checkpoint, "> /dev/full")
    assert result.returncode == 1
    assert "no space left" in result.stderr and "Traceback" not in result.stderr


# --- outputs of the wrong kind, checked before the long work -----------------------------------


def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n\n".join(TEXTS), encoding="utf-8")
    return path


def test_tokenizer_out_that_is_a_directory_fails_before_training(tmp_path: Path, capsys) -> None:
    (tmp_path / "tok").mkdir()
    code = main(["tokenizer", "--input", str(corpus(tmp_path)), "--out", str(tmp_path / "tok")])
    err = capsys.readouterr().err
    assert code == 1 and f"error: --out {tmp_path / 'tok'} is a directory" in err
    assert "tokenizer health" not in err  # refused before training, not after


def test_dataset_out_dir_that_is_a_file_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "bins").write_text("not a folder")
    code = main(["dataset", "--input", str(corpus(tmp_path)), "--out-dir", str(tmp_path / "bins")])
    err = capsys.readouterr().err
    assert code == 1 and "is a file, but it must be a directory" in err


def test_an_unreadable_input_is_named(tmp_path: Path, capsys, monkeypatch) -> None:
    path = corpus(tmp_path)
    real_open = builtins.open

    def open_denied(file, *args, **kwargs):  # as root, chmod 000 would not stop a read
        if str(file) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_denied)
    monkeypatch.setattr(io, "open", open_denied)  # what Path.open calls
    code = main(["tokenizer", "--input", str(path), "--out", str(tmp_path / "tok.json")])
    err = capsys.readouterr().err
    assert code == 1 and str(path) in err and "permission denied" in err
    assert "Traceback" not in err


# --- full and read-only disks (a small tmpfs; needs root) ---------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 64 KB tmpfs at tmp_path/disk, or a skip where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_named_and_leaves_no_temp_files(
    tmp_path: Path, small_disk: Path, capsys
) -> None:
    tok = save_tokenizer(train_tokenizer(TEXTS * 200, vocab_size=400), tmp_path / "tok.json")
    big = tmp_path / "big.txt"
    big.write_text("\n\n\n".join(f"{t} {i}" for i, t in enumerate(TEXTS * 200)), encoding="utf-8")
    flags = ["--input", str(big), "--tokenizer", str(tok), "--block-size", "8"]
    code = main(["dataset", *flags, "--out-dir", str(small_disk)])
    err = capsys.readouterr().err
    assert code == 1 and f"writing the token bins in {small_disk}" in err
    assert "disk is probably full" in err and "Traceback" not in err
    assert list(small_disk.iterdir()) == []  # no temp files left behind


def test_a_read_only_output_is_refused_before_training(
    tmp_path: Path, small_disk: Path, capsys
) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    out = small_disk / "tokenizer.json"
    code = main(["tokenizer", "--input", str(corpus(tmp_path)), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "read-only file system" in err and "Traceback" not in err


# --- one writer per output; nothing half-published; nothing left behind --------------------------


def bins_flags(tmp_path: Path, out: Path) -> list[str]:
    tok = tmp_path / "tok.json"
    if not tok.exists():
        save_tokenizer(train_tokenizer(TEXTS, vocab_size=300), tok)
    many = "\n\n\n".join(f"{t} {i}" for i, t in enumerate(TEXTS * 10))
    (tmp_path / "c.txt").write_text(many, encoding="utf-8")
    return ["--input", str(tmp_path / "c.txt"), "--tokenizer", str(tok), "--block-size", "8",
            "--out-dir", str(out)]  # fmt: skip


def test_a_second_run_on_the_same_output_is_refused_with_the_first_named(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "bins"
    with exclusive(out, "--out-dir", is_dir=True):
        assert main(["dataset", *bins_flags(tmp_path, out)]) == 1
    err = capsys.readouterr().err
    assert f"error: {out} is being written by jobgpt (PID {os.getpid()}" in err
    assert main(["dataset", *bins_flags(tmp_path, out)]) == 0  # free again afterwards
    assert not (out / ".jobgpt.lock").exists()


def test_the_lock_of_a_killed_run_is_free_at_once(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from jobgpt.files import exclusive\n"
         f"with exclusive({str(tmp_path)!r}, 'dir', is_dir=True):\n"
         "    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(OutputBusy, match=f"PID {holder.pid}"):
        with exclusive(tmp_path, "dir", is_dir=True):
            pass
    holder.kill()  # kill -9: no clean-up ran
    holder.wait()
    with exclusive(tmp_path, "dir", is_dir=True):
        pass


def test_temp_files_of_dead_runs_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    left = tmp_path / f".train.bin.jobgpt-{dead}.tmp"
    mine = tmp_path / f".ckpt.pt.jobgpt-{os.getpid()}.tmp"
    other = tmp_path / f".notes.{dead}.tmp"  # another program's: not ours to remove
    for path in (left, mine, other):
        path.write_bytes(b"x")
    assert sweep_temp_files(tmp_path) == [left]
    assert mine.exists() and other.exists()


def test_tokenizer_and_bins_are_not_replaced_without_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bins"
    assert main(["dataset", *bins_flags(tmp_path, out)]) == 0
    before = (out / "train.bin").read_bytes()
    capsys.readouterr()
    assert main(["dataset", *bins_flags(tmp_path, out)]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'meta.json'} already exists" in err and "--overwrite" in err
    assert (out / "train.bin").read_bytes() == before
    assert main(["dataset", *bins_flags(tmp_path, out), "--overwrite"]) == 0
    tok = ["tokenizer", "--input", str(tmp_path / "c.txt"), "--out", str(tmp_path / "tok.json")]
    assert main(tok) == 1 and main([*tok, "--overwrite"]) == 0


@pytest.mark.parametrize(
    "interrupt_at, new_build",
    [(".meta.json.pending", False), ("train.bin", True), ("val.bin", True), ("meta.json", True)],
)
def test_an_interrupted_rebuild_never_mixes_two_builds(
    tmp_path: Path, monkeypatch, interrupt_at: str, new_build: bool
) -> None:
    """Ctrl-C at each step of replacing the bins: before the swap is recorded the old dataset
    stands whole; after it, the next read completes the new one. Never half of each."""
    out = tmp_path / "bins"
    assert main(["dataset", *bins_flags(tmp_path, out)]) == 0
    real_replace = os.replace

    def interrupted_replace(src, dst):
        if Path(dst).name == interrupt_at:
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted_replace)
    assert main(["dataset", *bins_flags(tmp_path, out), "--seed", "5", "--overwrite"]) == 130
    monkeypatch.setattr(os, "replace", real_replace)
    bins = TokenBins(out)  # checks every size against meta.json; completes a recorded swap
    assert bins.meta["seed"] == (5 if new_build else DatasetConfig().seed)
    sweep_temp_files(out)  # what the next build does first
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train.bin", "val.bin"]


def test_sigterm_in_the_dataset_stage_exits_143_and_leaves_no_temp_files(tmp_path: Path) -> None:
    out = tmp_path / "bins"
    flags = bins_flags(tmp_path, out)
    big = tmp_path / "c.txt"
    big.write_text("\n\n\n".join(f"{t} {i}" for i, t in enumerate(TEXTS * 20_000)), "utf-8")
    script = REPO / "scripts" / "build_bin_dataset.py"
    proc = subprocess.Popen([sys.executable, str(script), *flags], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(out.glob(".*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert "Traceback" not in proc.stderr.read().decode()
    assert list(out.glob(".*")) == []  # neither temp files nor the lock


def test_other_stages_never_sweep_the_bins_of_an_unfinished_swap(
    tmp_path: Path, monkeypatch
) -> None:
    """A rebuild interrupted mid-swap leaves staged bins for the next read to move in; the
    tokenizer stage sweeping the same folder must not take them."""
    out = tmp_path / "bins"
    assert main(["dataset", *bins_flags(tmp_path, out)]) == 0
    real_replace = os.replace

    def interrupted_replace(src, dst):
        if Path(dst).name == "val.bin":
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted_replace)
    main(["dataset", *bins_flags(tmp_path, out), "--seed", "5", "--overwrite"])
    monkeypatch.setattr(os, "replace", real_replace)
    tok = ["tokenizer", "--input", str(tmp_path / "c.txt"), "--out", str(out / "tokenizer.json")]
    assert main(tok) == 0  # sweeps temp files in bins/
    assert TokenBins(out).meta["seed"] == 5  # the new build, whole
