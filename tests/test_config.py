"""Stage configs check themselves when built, so a config made in code gets the CLI's errors."""

from __future__ import annotations

import math
from dataclasses import fields, replace

import pytest

from jobgpt.checks import MAX_NEW_TOKENS
from jobgpt.cli import main
from jobgpt.config import (
    DatasetConfig,
    DemoConfig,
    GenerateConfig,
    ModelConfig,
    TokenizerConfig,
    TrainConfig,
    make_config,
)
from jobgpt.errors import ConfigError

CONFIGS = [DatasetConfig, DemoConfig, GenerateConfig, ModelConfig, TokenizerConfig, TrainConfig]
FLOAT_FIELDS = [
    (cls, f.name)
    for cls in CONFIGS
    for f in fields(cls)
    if isinstance(getattr(cls(), f.name), float)
]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("cls, name", FLOAT_FIELDS, ids=lambda v: getattr(v, "__name__", v))
def test_every_float_setting_must_be_a_finite_number(cls: type, name: str, bad: float) -> None:
    with pytest.raises(ConfigError, match=f"--{name.replace('_', '-')} must be a finite number"):
        cls(**{name: bad})


def test_nan_from_the_command_line_is_an_error_not_a_traceback(capsys) -> None:
    assert main(["generate", "--temperature", "nan"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --temperature must be a finite number, got nan")
    assert "Traceback" not in err


def test_configs_edited_in_code_are_checked_too() -> None:
    cfg = make_config(TrainConfig, {"preset": "tiny"})
    with pytest.raises(ConfigError, match="--batch-size must be at least 1"):
        replace(cfg, batch_size=0)
    with pytest.raises(ConfigError, match="--n-embd 65 is not divisible by --n-head 2"):
        replace(cfg.model, n_embd=65)
    with pytest.raises(ConfigError, match="--val-fraction"):
        DatasetConfig(val_fraction=1.5)


def test_generation_length_and_batch_are_bounded() -> None:
    GenerateConfig(max_new_tokens=MAX_NEW_TOKENS)  # the bound itself is fine
    with pytest.raises(ConfigError, match="--max-new-tokens 1000000000 is outside") as err:
        GenerateConfig(max_new_tokens=10**9)
    assert "200" in err.value.hint
    with pytest.raises(ConfigError, match="--num-samples 100000 is more than"):
        GenerateConfig(num_samples=100_000)


def test_greedy_draws_one_sample_unless_told_otherwise() -> None:
    assert GenerateConfig(temperature=0).samples == 1
    assert GenerateConfig(temperature=0, num_samples=3).samples == 3
    assert GenerateConfig().samples > 1
