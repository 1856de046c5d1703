"""Shared test setup."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from jobgpt.config import TrainConfig, make_config
from jobgpt.corpus import iter_documents
from jobgpt.errors import InputError
from jobgpt.stages import run_stage


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tests train tiny models: they run as fast on one CPU thread as on two, and one thread does
    not stall when other processes hold the cores (OpenMP threads wait for each other), so the
    suite stays fast on shared CI. Module scope covers module-scoped fixtures that train too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- tiny training runs: data built by the real stages, models small enough for milliseconds ---
# Plain functions (imported as `from conftest import tiny`) where a test builds several configs;
# the `data_dir` fixture for the common case.

# Subprocesses train on one thread too, for the reason given in one_torch_thread.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def build_data(root: Path, vocab_size: int = 400, n: int = 40) -> Path:
    """demo corpus -> tokenizer -> bins, with the real stages, into `root`."""
    corpus = str(root / "samples.txt")
    run_stage("demo-data", {"out": corpus, "n": n})
    tok = str(root / "tokenizer.json")
    run_stage("tokenizer", {"input": [corpus], "vocab_size": vocab_size, "out": tok})
    # block_size 128: val then holds several windows even for the tiny preset's context.
    run_stage(
        "dataset", {"input": [corpus], "tokenizer": tok, "out_dir": str(root), "block_size": 128}
    )
    return root


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bins and tokenizer shared by every test that only reads them."""
    return build_data(tmp_path_factory.mktemp("data"))


def tiny(data_dir: Path, out_dir: Path, **over: Any) -> TrainConfig:
    """A model small enough that a step takes milliseconds; dropout on, so that exact resume
    also covers the torch RNG.

    float32: tests compare losses and weights exactly (resume == uninterrupted, 2 processes ==
    1), and `auto` would pick bf16 autocast on CPUs with native bf16 (AVX512_BF16, AMX), whose
    rounding differs with the batch split. Tests of the bf16 path pass dtype="bfloat16".
    """
    values = {
        "preset": "tiny",
        "data_dir": str(data_dir),
        "out_dir": str(out_dir),
        "device": "cpu",
        "dtype": "float32",
        "model": {"block_size": 32, "n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.1},
        "batch_size": 4,
        "eval_windows": 4,
        "eval_interval": 4,
        "log_interval": 1,
        "max_steps": 8,
        "warmup_steps": 2,
    }
    values["model"].update(over.pop("model", {}))
    return make_config(TrainConfig, {**values, **over})


def records(out_dir: Path, kind: str) -> dict[int, dict]:
    """metrics.jsonl's records of one kind ("step" or "eval"), by step."""
    lines = (out_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if r["kind"] == kind}


# --- reading inputs: what test_corpus.py and test_inputs.py both use ---------------------------


def texts(*patterns: str | Path) -> list[str]:
    """The documents' texts of these inputs, as the data stages read them."""
    return [doc.text for doc in iter_documents([str(p) for p in patterns])]


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))  # no newline translation: bytes as written
    return path


def error_for(*patterns: str | Path) -> InputError:
    """The InputError reading these inputs raises; every one must say how to fix it."""
    with pytest.raises(InputError) as info:
        list(iter_documents([str(p) for p in patterns]))
    assert info.value.hint, "every input error says how to fix it"
    return info.value
