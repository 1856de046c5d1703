"""The report table of `run_all.py`: the figures picked from each bench's JSON, and the markdown.

Each stage's `*_rows` function reads the figures that matter from its bench's JSON; a bench whose
JSON changed shape becomes a "failed" row instead of stopping the report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# --- the figures -------------------------------------------------------------------------------


def row(
    stage: str, figure: str, value: Any, unit: str, device: str | None, dtype: str | None, note=""
) -> dict[str, Any]:
    return {
        "stage": stage,
        "figure": figure,
        "value": value,
        "unit": unit,
        "device": device,
        "dtype": dtype,
        "note": note,
    }


def stage_rows(name: str, stage: dict[str, Any]) -> list[dict[str, Any]]:
    if stage["status"] != "ok":
        return [row(name, "failed", None, "", None, None, stage["error"])]
    try:
        return FIGURES[name](stage["result"], stage)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:  # a bench changed its JSON
        return [row(name, "failed", None, "", None, None, f"unexpected JSON: {err!r}")]


def tokenizer_rows(r: dict[str, Any], stage: dict[str, Any]) -> list[dict[str, Any]]:
    vocab = f"vocab {r['vocab_requested']:,} (got {r['vocab_achieved']:,})"
    return [
        row("tokenizer", "training time", r["train_seconds"], "s", "cpu", None,
            f"{vocab}, {r['train_docs']:,} docs; {r['train_cpu_seconds']} CPU s"),
        row("tokenizer", "bytes/token (held-out 5%)", r["bytes_per_token"], "B/token", "cpu",
            None, f"round trip {r['round_trip']:.1%}, byte fallback {r['byte_fallback_rate']:.4%}"),
    ]  # fmt: skip


def dataset_rows(r: dict[str, Any], stage: dict[str, Any]) -> list[dict[str, Any]]:
    runs = len(r["seconds"])
    return [
        row("dataset", "build throughput", r["best_mb_s"], "MB/s", "cpu", None,
            f"best of {runs} (median {r['median_mb_s']}), {r['text_mb']} MB text, "
            f"{r['tokens']:,} tokens; bare encoder {r['encoder_mb_s']} MB/s"),
        row("dataset", "peak memory (RSS)", r.get("peak_rss_mib", stage["peak_rss_mib"]), "MiB",
            "cpu", None, "whole bench process: tokenizer training, texts in memory, the stage"),
    ]  # fmt: skip


def train_rows(r: dict[str, Any], stage: dict[str, Any]) -> list[dict[str, Any]]:
    device, dtype, peak_dtype = r["device"], r["dtype"], r["peak_dtype"]
    note = (
        f"{r['params']:,} params, {r['tokens_per_step']:,} tokens/step, "
        f"{len(r['step_s'])} steps, {_threads(r['threads'])}, compile {r['compile'].split()[0]}"
    )
    rows = [
        row("train", "tokens/s", r["tokens_per_s"], "tokens/s", device, dtype, note),
        row("train", "text bytes/s", r["text_bytes_per_s"], "B/s", device, dtype,
            f"{r['bytes_per_token']} B/token"),
        row("train", "achieved model FLOP/s", r["model_flops_per_s"], "FLOP/s", device, dtype),
        row("train", f"matmul peak ({peak_dtype})", r["matmul_peak_flops"], "FLOP/s", device,
            peak_dtype, "measured in the same run, before and after the timed steps"),
        row("train", f"fraction of {peak_dtype} peak", r["fraction_of_peak"], "", device, dtype,
            f"calm steps only: {r['calm_fraction_of_peak'] or 'n/a'} ({r['calm_steps']} of "
            f"{len(r['step_s'])} steps had the cores to themselves)"),
    ]  # fmt: skip
    fp32_peak = r.get("fp32_matmul_peak_flops")
    if fp32_peak and peak_dtype != "float32":
        rows += [
            row("train", "matmul peak (float32)", fp32_peak, "FLOP/s", device, "float32"),
            row("train", "fraction of float32 peak", r["fraction_of_fp32_peak"], "", device, dtype,
                "the fp32 yardstick of the >= 0.75 target; training runs in " + dtype),
        ]  # fmt: skip
    if r.get("mfu_nominal"):
        rows.append(row("train", "MFU (datasheet peak)", r["mfu_nominal"], "", device, dtype))
    if r.get("fraction_of_model_shapes_peak") is not None:
        rows += [
            row("train", f"fraction of {peak_dtype} peak, square matmul",
                r["fraction_of_square_peak"], "", device, dtype,
                f"square peak {show(r['square_peak_flops'], 'FLOP/s')}"),
            row("train", f"fraction of {peak_dtype} peak, model's matmul shapes",
                r["fraction_of_model_shapes_peak"], "", device, dtype,
                f"best of the model's nn.Linear shapes: "
                f"{show(r['model_shapes_peak_flops'], 'FLOP/s')}"),
        ]  # fmt: skip
    busy = r.get("busy")
    if busy:
        rows += [
            row("train", "tokens/s, one busy process", busy["tokens_per_s"], "tokens/s", device,
                dtype, f"{busy['threads_chosen']}; quiet: {r['quiet']['threads_chosen']}"),
            row("train", "busy / quiet tokens/s", r["busy_over_quiet"], "", device, dtype,
                f"target >= 0.5; busy fraction of {peak_dtype} peak {busy['fraction_of_peak']}"),
        ]  # fmt: skip
    return rows


def generate_rows(r: dict[str, Any], stage: dict[str, Any]) -> list[dict[str, Any]]:
    runs = sorted(r["runs"], key=lambda run: (not run["kv_cache"], run["batch"]))
    device, dtype = r["device"], r.get("dtype", "float32")
    rows = [
        row("generate", f"tokens/s, batch {run['batch']}, "
            f"{'cached' if run['kv_cache'] else 'uncached'}", run["tokens_per_s"], "tokens/s",
            device, dtype, f"{run['new_tokens']} new tokens, {run['ms_per_step']} ms/step, "
            f"{_threads(run.get('threads', r['torch_threads']))}")
        for run in runs
    ]  # fmt: skip
    if r.get("fraction_of_bandwidth") is not None:
        bw, per_token = r["memory_bandwidth"], r["bytes_per_token_batch1"]
        rows.append(row("generate", "fraction of memory bandwidth, batch 1",
                        r["fraction_of_bandwidth"], "", device, dtype,
                        f"{per_token['total'] / 1e6:.1f} MB read per token; read "
                        f"{bw['read_gb_s']} GB/s ({_threads(bw['threads'])})"))  # fmt: skip
    for run in (r.get("busy") or {}).get("runs", []):
        ratio = r["busy_over_quiet"][f"batch{run['batch']}"]
        note = f"{ratio:.2f}x quiet (target >= 0.5); {run['threads_chosen']}"
        rows.append(row("generate", f"tokens/s, batch {run['batch']}, cached, one busy process",
                        run["tokens_per_s"], "tokens/s", device, dtype, note))  # fmt: skip
    return rows


def serve_rows(r: dict[str, Any], stage: dict[str, Any]) -> list[dict[str, Any]]:
    runs = sorted(r["runs"], key=lambda run: run["clients"])
    alone = next((run["aggregate_tokens_per_s"] for run in runs if run["clients"] == 1), None)
    threads = _threads(r["server_threads"]) if r["server_threads"] else r["server_device"]
    rows = []
    for run in runs:
        n, rate = run["clients"], run["aggregate_tokens_per_s"]
        note = f"{r['max_tokens']} streamed tokens each, median TTFT {run['ttft_s']['median']} s"
        if n > 1:
            streaming = f"{run['new_request_others_streaming']} of {n - 1} others streaming"
            note += f"; a new request's TTFT {run['new_request_ttft_s']} s ({streaming})"
            note = f"{rate / alone:.2f}x 1 client; {note}" if alone else note
        figure = f"aggregate tokens/s, {n} client{'' if n == 1 else 's'}"
        note += f"; server {threads}"
        rows.append(row("serve", figure, rate, "tokens/s", r["device"], r["dtype"], note))
    for run in r.get("busy_runs", []):
        n, ratio = run["clients"], r["busy_over_quiet"][str(run["clients"])]
        figure = f"aggregate tokens/s, {n} client{'' if n == 1 else 's'}, one busy process"
        note = f"{ratio}x quiet (target >= 0.5); server {r['threads_chosen']}"
        rate = run["aggregate_tokens_per_s"]
        rows.append(row("serve", figure, rate, "tokens/s", r["device"], r["dtype"], note))
    return rows


def _threads(n: int) -> str:
    return f"{n} thread{'' if n == 1 else 's'}"


FIGURES: dict[str, Callable[[dict[str, Any], dict[str, Any]], list[dict[str, Any]]]] = {
    "tokenizer": tokenizer_rows,
    "dataset": dataset_rows,
    "train": train_rows,
    "generate": generate_rows,
    "serve": serve_rows,
}


# --- the table ---------------------------------------------------------------------------------


def show(value: Any, unit: str) -> str:
    """A figure for people: 1.23e11 FLOP/s -> "123 GFLOP/s", 0.071 -> "0.071 (7.1%)"."""
    if value is None:
        return "–"
    if unit in ("FLOP/s", "B/s"):
        for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {prefix}{unit}"
        return f"{value:.3g} {unit}"
    if unit == "":
        return f"{value:.3g} ({value:.1%})"
    number = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return f"{number} {unit}"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine_info"]
    where = f"GPU {m['gpu']} x{m['gpu_count']}, " if m["gpu"] else ""
    stages = report["stages"].items()
    train = report["stages"].get("train", {}).get("result") or {}
    quick = " with --quick (tiny sizes: a smoke run, not figures to compare)"
    lines = [
        f"# Benchmarks: {report['machine']}",
        "",
        f"{where}CPU {m['cpu_model']}, {m['cores']} cores; torch {m['torch']}, "
        f"Python {m['python']}; {m['platform']}.",
        f"Corpus: {report['corpus']}. Run {report['started']}{quick if report['quick'] else ''}.",
    ]
    if train.get("dtype_reason"):
        lines.append(f"Training precision: {train['dtype_reason']}.")
    lines += [
        "Load average (1 min) before/after each stage: "
        + ", ".join(f"{name} {'/'.join(map(str, s['load_avg_1m']))}" for name, s in stages)
        + ". Timings on a shared machine move with other people's work.",
        "",
        "| stage | figure | value | device | dtype | CPU | cores | torch | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in report["figures"]:
        value = "**failed**" if f["figure"] == "failed" else show(f["value"], f["unit"])
        cells = [f["stage"], f["figure"], value, f["device"] or "–", f["dtype"] or "–",
                 f["cpu_model"], str(f["cores"]), f["torch"], f["note"]]  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
