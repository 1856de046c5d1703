"""Checkpoints: atomic writes, safe loading, everything a resume or a later stage needs inside,
RNG round trips, and the tokenizer fingerprint check."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_data, tiny

from jobgpt.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    tokenizer_from_checkpoint,
)
from jobgpt.errors import CheckpointError
from jobgpt.files import atomic_open
from jobgpt.resume import check_tokenizer_match, rng_state, set_rng_state
from jobgpt.tokenizer import tokenizer_sha256
from jobgpt.trainer import Trainer


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_data(tmp_path_factory.mktemp("data"))


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    # A checkpoint is shared like the data files: readable by others unless the umask says no.
    old = os.umask(0o022)
    try:
        save_checkpoint({"step": 1}, tmp_path / "ckpt.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "ckpt.pt").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind


def test_atomic_open_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"the last good checkpoint")
    with pytest.raises(RuntimeError), atomic_open(path, "wb") as f:
        f.write(b"half a new chec")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"the last good checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind


def test_a_damaged_checkpoint_points_at_its_intact_sibling(tmp_path: Path) -> None:
    save_checkpoint({"model_config": {}, "model": {}}, tmp_path / "best.pt")
    (tmp_path / "ckpt.pt").write_bytes(b"cut off mid-wri")
    with pytest.raises(CheckpointError, match="could not be read") as err:
        load_checkpoint(tmp_path / "ckpt.pt")
    assert f"--checkpoint {tmp_path / 'best.pt'}" in err.value.hint
    assert "--resume" in err.value.hint


def test_loading_refuses_pickled_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model_config": {}, "model": {}, "payload": Path("/etc/passwd")}, path)
    with pytest.raises(CheckpointError, match="refuses to load"):
        load_checkpoint(path)


def test_a_trainer_checkpoint_holds_everything_and_loads_safely(
    data_dir: Path, tmp_path: Path
) -> None:
    trainer = Trainer(tiny(data_dir, tmp_path, max_steps=3))
    trainer.fit()
    # Plain torch.load with weights_only=True: no pickled classes anywhere inside.
    ckpt = torch.load(tmp_path / "ckpt.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 3
    assert ckpt["model_config"]["vocab_size"] == trainer.bins.vocab_size == 400
    assert ckpt["train_config"]["batch_size"] == 4 and ckpt["train_config"]["model"]["n_embd"] == 32
    assert ckpt["optimizer"]["state"] and len(ckpt["optimizer"]["param_groups"]) == 2
    assert ckpt["schedule"]["max_steps"] == 3
    assert set(ckpt["rng"][0]) >= {"torch", "numpy", "python"}
    assert ckpt["sampler"] == trainer.sampler.bit_generator.state
    assert set(ckpt["versions"]) == {"torch", "tokenizers", "numpy", "jobgpt", "python"}
    assert ckpt["monitor"]["history"][-1]["step"] == 3

    # Later stages need nothing but the file: the architecture, weights and tokenizer.
    model = model_from_checkpoint(ckpt)
    for name, value in trainer.raw_model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value)
    tok = tokenizer_from_checkpoint(ckpt)
    assert tokenizer_sha256(tok) == ckpt["tokenizer"]["sha256"] == trainer.tokenizer_sha256
    assert (tmp_path / "best.pt").is_file()


def test_rng_state_round_trips_every_generator(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    save_checkpoint({"model_config": {}, "model": {}, "rng": rng_state()}, tmp_path / "r.pt")
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    got = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.testing.assert_close(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]


def test_tokenizer_mismatch_names_both_tokenizers() -> None:
    ckpt = {"tokenizer": {"sha256": "a" * 64, "vocab_size": 400}}
    check_tokenizer_match(ckpt, "a" * 64, 400, "data")  # the same: fine
    with pytest.raises(CheckpointError) as err:
        check_tokenizer_match(ckpt, "b" * 64, 450, "data")
    assert "a" * 12 in err.value.message and "b" * 12 in err.value.message
    assert "vocab 400" in err.value.message and "vocab 450" in err.value.message
