"""`jobgpt eval`: how good a checkpoint is, in numbers that compare across runs.

Loads the model once and measures what was asked: the val split of the run's bins (always, when
they are found), bits per byte of `--text` files (`jobgpt.eval_text`), question-answer
faithfulness on `--qa` postings (`jobgpt.eval_qa`) and the structure of `--samples` free
generations (`jobgpt.eval_gen`). Prints a table on stdout, or with `--json` one JSON object
(logs and progress always go to stderr); `--report FILE.md` writes the same figures as markdown
with the checkpoint's facts and a link to the run's loss curve.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import unicodedata
from pathlib import Path
from typing import Any

from jobgpt.bins import TokenBins
from jobgpt.checkpoint import load_model
from jobgpt.config import EvalConfig
from jobgpt.errors import DataError, JobGPTError
from jobgpt.eval_gen import score_samples
from jobgpt.eval_qa import FIELDS, OUTCOMES, score_examples
from jobgpt.eval_text import check_stride, open_val, score_files, score_val
from jobgpt.files import atomic_write_text
from jobgpt.generator import TextGenerator
from jobgpt.inputs import resolve_inputs
from jobgpt.precision import choose_dtype
from jobgpt.runtime import describe_device

logger = logging.getLogger(__name__)

Section = tuple[str, list[tuple[str, str]]]  # a heading and its (figure, value with unit) rows


def run(cfg: EvalConfig) -> dict[str, Any]:
    """Measure the checkpoint; print the results; return them as one dict (what --json prints)."""
    if sys.stdout is None:
        raise JobGPTError(
            "standard output is closed, so there is nowhere to print the results",
            "run it with stdout open, or pass --report FILE.md",
        )
    for patterns in (*([p] for p in cfg.text), cfg.qa):  # a typo fails now, not after an hour
        if patterns:
            resolve_inputs(patterns)
    model, tok, ckpt = load_model(cfg.checkpoint, cfg.device)
    if cfg.text:
        check_stride(cfg.stride, model.config.block_size)
    gen = TextGenerator(model, tok)
    dtype, why = choose_dtype(gen.device, "auto")
    logger.info("evaluating %s on %s in %s (%s)", cfg.checkpoint, gen.device, dtype, why)
    results: dict[str, Any] = {
        "checkpoint": checkpoint_facts(cfg.checkpoint, model.num_params(), ckpt),
        "device": describe_device(gen.device),
        "dtype": str(dtype).removeprefix("torch."),
    }
    bins = find_val(cfg, tok, ckpt)
    if bins is not None:
        results["val"] = score_val(model, bins, tok, dtype)
    if cfg.text:
        results["text"] = [
            score_files(model, tok, pattern, cfg.stride, dtype).as_dict() for pattern in cfg.text
        ]
    if cfg.qa:
        results["qa"] = score_examples(gen, cfg.qa, cfg.max_qa, cfg.max_new_tokens)
    if cfg.samples:
        results["samples"] = score_samples(gen, cfg.samples, cfg.max_new_tokens, cfg.seed)
    if cfg.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
    else:
        print(render_text(results))
    if cfg.report:
        atomic_write_text(cfg.report, render_markdown(results, Path(cfg.report)))
        logger.info("wrote the report to %s", cfg.report)
    return results


def checkpoint_facts(path: str, params: int, ckpt: dict[str, Any]) -> dict[str, Any]:
    """What the report says about the checkpoint: its step, settings, size and loss curve."""
    train = ckpt.get("train_config") or {}
    history = (ckpt.get("monitor") or {}).get("history") or []
    best = min((h["val_loss"] for h in history if h.get("val_loss") is not None), default=None)
    loss_png = Path(path).parent / "loss.png"
    return {
        "path": str(path),
        "step": ckpt.get("step"),
        "preset": train.get("preset"),
        "params": params,
        "model": ckpt["model_config"],
        "best_val_loss": best,
        "data_dir": (ckpt.get("data") or {}).get("dir"),
        "loss_png": str(loss_png) if loss_png.is_file() else None,
    }


def find_val(cfg: EvalConfig, tok: Any, ckpt: dict[str, Any]) -> TokenBins | None:
    """The bins whose val split to score: --data-dir (an error when unusable), else the data dir
    the checkpoint records (skipped with a note when it is gone, unless nothing else was asked)."""
    if cfg.data_dir is not None:
        return open_val(cfg.data_dir, tok, cfg.checkpoint)
    recorded = (ckpt.get("data") or {}).get("dir")
    try:
        if recorded is None:
            raise DataError(
                f"{cfg.checkpoint} records no data directory",
                "pass --data-dir with the bins it was trained on",
            )
        return open_val(recorded, tok, cfg.checkpoint)
    except DataError as err:
        if not (cfg.text or cfg.qa or cfg.samples):
            raise DataError(
                f"nothing to evaluate: the val split is not available ({err.message})",
                "pass --data-dir with the bins the checkpoint was trained on (a relative "
                "recorded path is read from the current directory), or --text/--qa/--samples",
            ) from None
        logger.warning("skipping the val split: %s (pass --data-dir to score it)", err)
        return None


# --- the figures, as sections of (figure, value with unit) rows ----------------------------------


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def checkpoint_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    c = results["checkpoint"]
    m = c["model"]
    return [
        ("step", f"{c['step']} optimizer steps" if c["step"] is not None else "–"),
        ("preset", str(c["preset"] or "–")),
        ("parameters", f"{c['params'] / 1e6:.2f} M"),
        ("architecture", f"{m['n_layer']} layer(s), {m['n_head']} head(s), {m['n_embd']} wide"),
        ("context", f"{m['block_size']:,} tokens; vocabulary {m['vocab_size']:,} tokens"),
        ("best val loss in training", f"{_num(c['best_val_loss'], 4)} nats/token"),
        ("evaluated on", f"{results['device']}, {results['dtype']}"),
    ]


def sections(results: dict[str, Any]) -> list[Section]:
    """Every measured figure with its unit, in the order the table and the report show them."""
    out: list[Section] = []
    if val := results.get("val"):
        out.append(
            (
                f"val split: {val['input']}",
                [
                    ("loss", f"{val['loss']:.4f} nats/token"),
                    ("perplexity", f"{val['perplexity']:.3f} (e^loss)"),
                    ("bits per byte", f"{val['bits_per_byte']:.4f} bits/byte"),
                    (
                        "scored",
                        f"{val['tokens']:,} tokens in {val['windows']:,} windows, "
                        f"{val['bytes']:,} bytes",
                    ),
                ],
            )
        )
    for text in results.get("text", []):
        out.append(
            (
                f"text: {text['input']}",
                [
                    ("bits per byte", f"{text['bits_per_byte']:.4f} bits/byte"),
                    ("loss", f"{text['nats_per_token']:.4f} nats/token"),
                    (
                        "scored",
                        f"{text['tokens']:,} tokens of {text['documents']:,} documents, "
                        f"{text['bytes']:,} bytes, stride {text['stride']} tokens",
                    ),
                ],
            )
        )
    if qa := results.get("qa"):
        out.append((f"question answering: {', '.join(qa['inputs'])}", _qa_rows(qa)))
    if gen := results.get("samples"):
        out.append(
            (f"free generations ({gen['samples']} samples, seed {gen['seed']})", _gen_rows(gen))
        )
    return out


def _qa_rows(qa: dict[str, Any]) -> list[tuple[str, str]]:
    o = qa["overall"]
    return [
        ("answers", f"{qa['answers']} (greedy; {qa['with_reference']} with a reference answer)"),
        ("well-formed", f"{_pct(qa['well_formed'])} of answers"),
        ("fields scored", f"{o['scored']} field values"),
        *((o_name, f"{_pct(o[f'{o_name}_share'])} of scored fields") for o_name in OUTCOMES),
        ("time", f"{qa['seconds']:.1f} s"),
    ]


def _gen_rows(gen: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("read as a posting", f"{_pct(gen['posting'])} of samples"),
        ("header line", f"{_pct(gen['header'])} of samples"),
        ("sections in template order", f"{_pct(gen['sections_in_order'])} of samples"),
        ("ended by the model", f"{_pct(gen['ended'])} of samples"),
        (
            "distinct token 3-grams",
            f"{_num(gen['distinct_3grams'])} of all 3-grams (1 = none repeat)",
        ),
        ("length", f"{gen['mean_tokens']:.0f} tokens per sample on average"),
    ]


def field_table(qa: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per field: how many were scored and the share of each outcome."""
    header = ["field", "scored", *(f"{o} %" for o in OUTCOMES)]
    rows = []
    for key, label in (
        *((f.key, f"{f.key} ({f.answer_label})") for f in FIELDS),
        ("overall", "overall"),
    ):
        counts = qa["overall"] if key == "overall" else qa["fields"][key]
        rows.append([label, str(counts["scored"]), *(_pct(counts[f"{o}_share"]) for o in OUTCOMES)])
    return header, rows


# --- rendering ----------------------------------------------------------------------------------


def render_text(results: dict[str, Any]) -> str:
    """The table printed on stdout."""
    lines = [f"jobgpt eval: {results['checkpoint']['path']}"]
    for title, rows in [("checkpoint", checkpoint_rows(results)), *sections(results)]:
        width = max(_width(name) for name, _ in rows)
        lines += ["", title, *(f"  {_pad(name, width)}  {value}" for name, value in rows)]
        if title.startswith("question answering"):
            header, table = field_table(results["qa"])
            widths = [max(_width(r[i]) for r in [header, *table]) for i in range(len(header))]
            for row in [header, *table]:
                cells = [_pad(row[0], widths[0])]
                cells += [_pad(c, w, right=True) for c, w in zip(row[1:], widths[1:], strict=True)]
                lines.append("    " + "  ".join(cells))
    return "\n".join(lines)


def _width(text: str) -> int:
    """Terminal columns: Hangul and other wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int, right: bool = False) -> str:
    fill = " " * (width - _width(text))
    return fill + text if right else text + fill


def render_markdown(results: dict[str, Any], report: Path) -> str:
    """The --report file: the same figures, the checkpoint's facts and the loss curve."""
    c = results["checkpoint"]
    lines = [f"# Evaluation of `{c['path']}`", "", "## Checkpoint", ""]
    lines += _md_table(["figure", "value"], [list(r) for r in checkpoint_rows(results)])
    if c["loss_png"]:
        link = os.path.relpath(c["loss_png"], report.resolve().parent)
        lines += ["", f"Training loss curve: [loss.png]({Path(link).as_posix()})"]
    for title, rows in sections(results):
        lines += ["", f"## {title}", ""]
        lines += _md_table(["figure", "value"], [list(r) for r in rows])
        if title.startswith("question answering"):
            lines += ["", "Per field (shares of the field's scored values):", ""]
            lines += _md_table(*field_table(results["qa"]))
    if first := (results.get("samples") or {}).get("first_sample"):
        lines += ["", "The first free generation:", "", "```text", first.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cells(row: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"

    return [cells(header), "|" + "---|" * len(header), *(cells(r) for r in rows)]
