"""Run every stage's benchmark and write one report for this machine (JSON and a markdown table).

    uv run python bench/run_all.py                          # demo corpus, full sizes
    uv run python bench/run_all.py --corpus ../shared/data/wanted/postings.jsonl
    uv run python bench/run_all.py --quick --out-dir /tmp/b  # tiny sizes: a smoke run
    uv run python bench/run_all.py --busy                   # train/generate/serve: also busy

Each bench (bench_tokenizer, bench_dataset, bench_train, bench_generate, bench_serve) runs as its
own subprocess, through a small wrapper process that records the bench's peak RSS with
`getrusage(RUSAGE_CHILDREN)` (a fresh wrapper per bench, so no bench inherits another's peak).
The figures that matter are picked from each bench's JSON, each tagged with the CPU model, core
count, torch version, device and dtype, and written to <out-dir>/<machine>.json (figures plus
every bench's full output) and <out-dir>/<machine>.md (the table, also printed to stdout).
<machine> is a filesystem-safe slug of the GPU name, or of the CPU model and core count.
--busy passes --busy to bench_train, bench_generate and bench_serve: each measures again beside
one busy process it starts and stops itself, and the table gains the busy figures and ratios.

A bench that fails or times out is a "failed" row with the last line of its stderr; the other
stages still run. Timings are data, not pass/fail: on a shared machine they move with other
people's work (each stage records the load average before and after it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
STAGES = ("tokenizer", "dataset", "train", "generate", "serve")
BUSY_STAGES = ("train", "generate", "serve")  # the benches that take --busy
DEMO_DOCS, QUICK_DEMO_DOCS = 3000, 300  # 3000: what bench_train builds from the demo on its own
QUICK_VOCAB = "1000"

# What --quick passes to each bench on top of the corpus: tiny sizes, one or two repetitions, and
# one torch thread (tiny matmuls on two threads stall whenever another process holds a core).
QUICK_ARGS = {
    "tokenizer": ["--vocab-size", QUICK_VOCAB],
    "dataset": ["--vocab-size", QUICK_VOCAB, "--repeat", "1"],
    "train": [
        "--vocab-size", QUICK_VOCAB, "--steps", "2", "--warmup", "1", "--peak-square", "256",
        "--threads", "1",
        "--set", "batch_size=4", "--set", "eval_windows=4", "--set", "model.block_size=64",
        "--set", "model.n_layer=2", "--set", "model.n_head=2", "--set", "model.n_embd=64",
    ],
    "generate": ["--new-tokens", "8", "--repeats", "1", "--threads", "1", "--bandwidth-mib", "128"],
    "serve": ["--quick"],
}  # fmt: skip

# Runs the bench (argv[2:]) as its child, then writes the child's resource usage to argv[1].
WRAPPER = """
import json, resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    json.dump({"maxrss": usage.ru_maxrss, "user_s": usage.ru_utime, "sys_s": usage.ru_stime}, f)
sys.exit(rc)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", help="corpus file for every stage (default: the demo corpus)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, seconds")
    parser.add_argument("--out-dir", default=str(BENCH_DIR / "results"), help="where to write")
    parser.add_argument("--timeout", type=float, help="seconds per bench (default 3600; quick 300)")
    parser.add_argument(
        "--busy", action="store_true", help="train, generate, serve: also beside a busy process"
    )
    args = parser.parse_args()
    timeout = args.timeout or (300.0 if args.quick else 3600.0)

    machine = machine_info()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="jobgpt-run-all-") as tmp:
        corpus, corpus_label = args.corpus, args.corpus
        if corpus is None:
            from jobgpt.demo_corpus import write_demo_corpus

            n = QUICK_DEMO_DOCS if args.quick else DEMO_DOCS
            corpus = str(write_demo_corpus(Path(tmp) / "demo.txt", n=n, seed=1337))
            corpus_label = f"demo corpus ({n:,} documents, seed 1337)"
        stages = {
            name: run_bench(
                name, bench_args(name, corpus, args.quick, args.busy), timeout, Path(tmp)
            )
            for name in STAGES
        }
    report = {
        "machine": machine["machine"],
        "machine_info": machine,
        "started": started,
        "quick": args.quick,
        "busy": args.busy,
        "corpus": corpus_label,
        "figures": [
            dict(row, **figure_context(machine))
            for name in STAGES
            for row in stage_rows(name, stages[name])
        ],
        "stages": stages,
    }
    table = markdown(report)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = machine["machine"]
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    json_path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(table, encoding="utf-8")
    print(table, end="")
    log(f"wrote {json_path} and {md_path}")


def log(message: str) -> None:
    print(f"[run_all] {message}", file=sys.stderr, flush=True)


# --- the machine -------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU model, cores, torch, device, GPU name; `machine`: the slug the files are named by."""
    import torch

    from jobgpt.precision import cpu_name

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpu = torch.cuda.get_device_name(0) if gpus else None
    mps = not gpus and torch.backends.mps.is_available()
    info: dict[str, Any] = {
        "cpu_model": cpu_name(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "device": "cuda" if gpus else "mps" if mps else "cpu",
        "gpu": gpu,
        "gpu_count": gpus,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    info["machine"] = machine_slug(info)
    return info


def machine_slug(info: dict[str, Any]) -> str:
    """The GPU's name ("nvidia-h200", "-x8" for eight), else CPU model and cores ("amd-epyc-2c")."""
    if info["gpu"]:
        count = f"-x{info['gpu_count']}" if info["gpu_count"] > 1 else ""
        return (_slug(info["gpu"]) or "gpu") + count
    return f"{_slug(info['cpu_model']) or 'cpu'}-{info['cores']}c"


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)|\bcpu\b", " ", text.lower())  # "Intel(R) Xeon(R) ... CPU @ 2.9GHz"
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def figure_context(machine: dict[str, Any]) -> dict[str, Any]:
    return {key: machine[key] for key in ("cpu_model", "cores", "torch")}


# --- running one bench -------------------------------------------------------------------------


def bench_args(name: str, corpus: str, quick: bool, busy: bool = False) -> list[str]:
    """The bench's flags: the corpus, the device (generation, serving: the best one here),
    --quick and --busy. bench_serve trains its tokenizer on the demo corpus whatever the corpus."""
    given = {
        "tokenizer": ["--data", corpus],
        "dataset": ["--data", corpus],
        "train": ["--corpus", corpus],
        "generate": ["--device", "auto"],
        "serve": ["--device", "auto"],
    }[name]
    busy_flag = ["--busy"] if busy and name in BUSY_STAGES else []
    return given + (QUICK_ARGS[name] if quick else []) + busy_flag


def run_bench(name: str, args: list[str], timeout: float, tmp: Path) -> dict[str, Any]:
    """Run bench_<name>.py in a subprocess: {"status": "ok", "result": its JSON, ...} or
    {"status": "failed", "error": what went wrong (its stderr's last line), ...}. Never raises
    for the bench's own failures."""
    script, usage_file = BENCH_DIR / f"bench_{name}.py", tmp / f"{name}.usage.json"
    command = [sys.executable, str(script), *args]
    record: dict[str, Any] = {
        "command": " ".join(["python", str(script.relative_to(ROOT)), *args]),
        "load_avg_1m": [round(os.getloadavg()[0], 2)],
    }
    log(f"{name}: {record['command']}")
    start = time.perf_counter()
    # A session of its own, so a timeout ends the bench along with the wrapper.
    proc = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, str(usage_file), *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        failed = proc.returncode != 0
        error = last_line(stderr, f"exit status {proc.returncode}") if failed else None
    except subprocess.TimeoutExpired:
        _kill(proc)
        stdout, stderr = proc.communicate()
        error = f"timed out after {timeout:g} s ({last_line(stderr, 'no stderr')})"
    except BaseException:  # Ctrl-C: do not leave the bench running in its own session
        _kill(proc)
        raise
    record["wall_s"] = round(time.perf_counter() - start, 1)
    record["load_avg_1m"].append(round(os.getloadavg()[0], 2))
    record.update(_usage(usage_file))
    result = parse_json(stdout) if error is None else None
    if error is None and result is None:
        error = f"printed no JSON ({last_line(stderr, 'no stderr')})"
    if error is not None:
        log(f"{name}: FAILED: {error}")
        tail = stderr.strip().splitlines()[-20:]
        return {"status": "failed", "error": error, "stderr_tail": tail, **record}
    log(f"{name}: done in {record['wall_s']} s")
    return {"status": "ok", **record, "result": result}


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _usage(path: Path) -> dict[str, Any]:
    """Peak RSS (MiB) and CPU seconds of the bench process, from the wrapper's getrusage."""
    try:
        usage = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"peak_rss_mib": None}
    per_mib = 1024**2 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB
    return {
        "peak_rss_mib": round(usage["maxrss"] / per_mib, 1),
        "cpu_s": round(usage["user_s"] + usage["sys_s"], 1),
    }


def last_line(text: str, default: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else default


def parse_json(stdout: str) -> dict[str, Any] | None:
    """The bench's JSON object: the whole stdout (bench_generate indents it) or its last line."""
    candidates = [stdout.strip(), *reversed(stdout.strip().splitlines())]
    for text in candidates:
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


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


if __name__ == "__main__":
    main()
