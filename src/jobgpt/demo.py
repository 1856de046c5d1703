"""`jobgpt demo`: the whole pipeline on the built-in demo corpus, in one command.

demo corpus -> tokenizer -> token bins -> training (TRAIN_PRESETS["demo"], with the
overfitting guard) -> a few generated postings and one question-answer example on a posting the
model never saw. Every artifact goes under `--out-dir` (runs/demo), so the demo never touches the
reference pipeline's data/ and checkpoints/. A stage whose output is already there is reused, so
running it again is quick; an interrupted training run resumes; `--fresh` starts over.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from jobgpt import dataset, generate, tokenizer, train
from jobgpt.commands import command
from jobgpt.config import (
    DatasetConfig,
    DemoConfig,
    DemoDataConfig,
    GenerateConfig,
    TokenizerConfig,
    make_config,
)
from jobgpt.demo_corpus import run_demo_data
from jobgpt.files import atomic_write_text
from jobgpt.presets import TRAIN_PRESETS
from jobgpt.resume import train_config

logger = logging.getLogger(__name__)

SUMMARY_FILE = "train_summary.json"  # written when training ended; its presence means "done"


def run(cfg: DemoConfig) -> dict[str, Any]:
    out = Path(cfg.out_dir)
    if cfg.fresh and out.exists():
        logger.info("demo: --fresh, removing %s/", out)
        shutil.rmtree(out)
    paths = _paths(out)
    _data_stages(cfg, paths)
    summary = _train(cfg, paths)
    _show_samples(cfg, paths)
    _print_where(paths, summary)
    return summary


def _paths(out: Path) -> dict[str, Path]:
    data, ckpt = out / "data", out / "checkpoints"
    return {
        "corpus": data / "samples.txt",
        "tokenizer": data / "tokenizer.json",
        "data_dir": data,
        "meta": data / "meta.json",
        "ckpt_dir": ckpt,
        "best": ckpt / "best.pt",
        "summary": ckpt / SUMMARY_FILE,
        "posting": out / "heldout_posting.txt",
    }


def _data_stages(cfg: DemoConfig, p: dict[str, Path]) -> None:
    corpus = str(p["corpus"])
    if not _reuse(p["corpus"], "demo corpus"):
        run_demo_data(make_config(DemoDataConfig, {"out": corpus, "n": cfg.n, "seed": cfg.seed}))
    if not _reuse(p["tokenizer"], "tokenizer"):
        values = {"input": [corpus], "vocab_size": cfg.vocab_size, "out": str(p["tokenizer"])}
        tokenizer.run(make_config(TokenizerConfig, values))
    if not _reuse(p["meta"], "token bins"):
        values = {
            "input": [corpus],
            "tokenizer": str(p["tokenizer"]),
            "out_dir": str(p["data_dir"]),
            "seed": cfg.seed,
            "block_size": TRAIN_PRESETS["demo"]["model"]["block_size"],  # val holds such windows
        }
        dataset.run(make_config(DatasetConfig, values))


def _reuse(path: Path, what: str) -> bool:
    if path.exists():
        logger.info("demo: reusing the %s in %s (--fresh to rebuild)", what, path)
        return True
    return False


def _train(cfg: DemoConfig, p: dict[str, Path]) -> dict[str, Any]:
    """Train (or resume), and write the "done" marker last, only for a run that ended as
    planned: a run stopped by a signal raises instead, so the next demo resumes it."""
    if p["summary"].exists() and p["best"].exists():
        logger.info("demo: reusing the trained model in %s/ (--fresh to retrain)", p["ckpt_dir"])
        return json.loads(p["summary"].read_text(encoding="utf-8"))
    resume = (p["ckpt_dir"] / "ckpt.pt").exists()
    if resume:
        logger.info("demo: an unfinished run is in %s/; resuming it", p["ckpt_dir"])
    values = {
        "preset": "demo",
        "data_dir": str(p["data_dir"]),
        "out_dir": str(p["ckpt_dir"]),
        "device": cfg.device,
        "seed": cfg.seed,
        "resume": resume,
    }
    summary = train.run(train_config(values))  # on resume: the checkpoint's settings
    atomic_write_text(p["summary"], json.dumps(summary, ensure_ascii=False, indent=2))
    return summary


def _show_samples(cfg: DemoConfig, p: dict[str, Path]) -> None:
    from jobgpt.demo_corpus import generate_demo_corpus
    from jobgpt.qa import parse_qa_document

    checkpoint = str(p["best"])
    print("\n=== 생성 예시 (generated postings) ===", flush=True)
    values = {"checkpoint": checkpoint, "num_samples": 2, "max_new_tokens": 160}
    generate.run(make_config(GenerateConfig, {**values, "device": cfg.device}))
    # A posting drawn with another seed: the model has never seen it, so copying fields from it
    # into the answer shows what the model learned rather than what it memorised.
    example = parse_qa_document(next(iter(generate_demo_corpus(1, cfg.seed + 1))))
    p["posting"].write_text(example.doc, encoding="utf-8")
    print(f"\n=== 질문-답변 예시 (question-answer on {p['posting']}) ===", flush=True)
    print(f"[QUESTION] {example.question}", flush=True)
    values = {
        "checkpoint": checkpoint,
        "question": example.question,
        "doc_file": str(p["posting"]),
        "num_samples": 1,
        "temperature": 0.0,
        "max_new_tokens": 240,
        "device": cfg.device,
    }
    generate.run(make_config(GenerateConfig, values))
    print("\n--- the answer written in the data (for comparison) ---")
    print(example.answer, flush=True)


def _print_where(p: dict[str, Path], summary: dict[str, Any]) -> None:
    lines = [
        "",
        "=== demo finished ===",
        f"corpus      {p['corpus']}",
        f"tokenizer   {p['tokenizer']}",
        f"token bins  {p['data_dir']}/train.bin, val.bin, meta.json",
        f"checkpoints {p['ckpt_dir']}/ckpt.pt (latest), best.pt (best val loss)",
        f"loss curve  {p['ckpt_dir']}/loss.png   metrics: {p['ckpt_dir']}/metrics.jsonl",
        f"training    {summary.get('summary', '')}",
        "next        "
        + command("generate", "--checkpoint", p["best"], "--prompt", "서울에서 React 개발자를"),
    ]
    print("\n".join(lines), flush=True)
