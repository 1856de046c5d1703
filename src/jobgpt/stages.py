"""The table of pipeline stages and `run_stage`: how the CLI and `jobgpt demo` run a stage.

Each stage is a config dataclass (its flags) and a "module:function" target that is imported only
when the stage runs, so this table costs no torch import and imports no stage module: the stages
(the demo, which runs the others, among them) sit below it, the CLI above it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from jobgpt import config as cfg
from jobgpt.presets import TRAIN_PRESETS


@dataclass(frozen=True)
class Stage:
    config: type  # the stage's config dataclass
    target: str  # "module:function" called with the built config
    help: str
    # "module:function" that builds the config from the typed values, where make_config's
    # "preset, then flags" is not the whole story (train: --resume takes the checkpoint's).
    configure: str | None = None
    presets: dict[str, dict[str, Any]] | None = (
        None  # named bundles of settings (--help shows them)
    )


STAGES: dict[str, Stage] = {
    "demo": Stage(
        cfg.DemoConfig,
        "jobgpt.demo:run",
        "the whole pipeline on the built-in demo corpus (about 10 minutes on 2 CPU cores)",
    ),
    "demo-data": Stage(
        cfg.DemoDataConfig,
        "jobgpt.demo_corpus:run_demo_data",
        "write the synthetic Korean job-posting demo corpus",
    ),
    "tokenizer": Stage(
        cfg.TokenizerConfig,
        "jobgpt.tokenizer:run",
        "stage 1: train the BPE tokenizer -> data/tokenizer.json",
    ),
    "dataset": Stage(
        cfg.DatasetConfig,
        "jobgpt.dataset:run",
        "stage 2: encode the corpus -> data/train.bin, val.bin, meta.json",
    ),
    "train": Stage(
        cfg.TrainConfig,
        "jobgpt.train:run",
        "stage 3: train the GPT -> checkpoints/ckpt.pt, best.pt",
        configure="jobgpt.resume:train_config",
        presets=TRAIN_PRESETS,
    ),
    "generate": Stage(
        cfg.GenerateConfig,
        "jobgpt.generate:run",
        "stage 4: sample job-posting text from a checkpoint",
    ),
    "eval": Stage(
        cfg.EvalConfig,
        "jobgpt.evaluate:run",
        "measure a checkpoint: val loss and bits per byte, QA faithfulness, posting structure",
    ),
    "export": Stage(
        cfg.ExportConfig,
        "jobgpt.export:run",
        "export a checkpoint for HuggingFace transformers (config.json, model.safetensors, ...)",
    ),
    "serve": Stage(
        cfg.ServeConfig,
        "jobgpt.serve:run",
        "serve a checkpoint: an OpenAI-compatible HTTP API and a Korean web page",
    ),
}


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{"model.n_layer": 2} -> {"model": {"n_layer": 2}}"""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return nested


def run_stage(name: str, values: dict[str, Any] | None = None) -> Any:
    """Run one stage by name with explicit values (the rest from presets/defaults)."""
    stage = STAGES[name]
    values = values or {}
    if stage.configure:
        config = _function(stage.configure)(values)
    else:
        config = cfg.make_config(stage.config, values)
    return _function(stage.target)(config)


def _function(target: str) -> Any:
    """The function named by "module:function", its module imported now."""
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)
