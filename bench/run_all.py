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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from figures import markdown, stage_rows  # bench/ is on sys.path when this runs as a script

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


if __name__ == "__main__":
    main()
