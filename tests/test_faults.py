"""Faults a careful user meets: pipes that close, full and read-only disks, outputs of the wrong
kind, unreadable inputs. Each ends in a one-paragraph error (or, for a closed pipe, quietly),
never a traceback, and never with a half-written output."""

from __future__ import annotations

import builtins
import errno
import io
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from jobgpt.checkpoint import save_checkpoint
from jobgpt.cli import main
from jobgpt.config import ModelConfig
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
