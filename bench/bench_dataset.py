"""Dataset-stage throughput: real postings -> train.bin/val.bin, end to end.

    uv run python bench/bench_dataset.py [--data PATH] [--repeat 3]

Trains a tokenizer first (untimed), then times `jobgpt dataset` (reading, parsing, dedup,
grouping, encoding, writing) and prints one JSON object. MB/s counts the UTF-8 text of the
documents. Target: >= 8 MB/s on 2 cores. On a shared machine, look at load_avg_1m: other
processes on the same cores slow every run; best_mb_s is the least disturbed one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from jobgpt.config import DatasetConfig, make_config
from jobgpt.corpus import iter_documents
from jobgpt.dataset import run
from jobgpt.tokenizer import save_tokenizer, train_tokenizer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wanted" / "postings.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="corpus file (.jsonl)")
    parser.add_argument("--vocab-size", type=int, default=24_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (best and median)")
    args = parser.parse_args()

    text_bytes = sum(len(doc.text.encode("utf-8")) for doc in iter_documents([args.data]))
    with tempfile.TemporaryDirectory() as tmp:
        tok_path = save_tokenizer(
            train_tokenizer((d.text for d in iter_documents([args.data])), args.vocab_size),
            Path(tmp) / "tokenizer.json",
        )
        cfg = make_config(
            DatasetConfig,
            {"input": [args.data], "tokenizer": str(tok_path), "out_dir": f"{tmp}/data"},
        )
        seconds, cpu = [], []
        for _ in range(args.repeat):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            with contextlib.redirect_stdout(io.StringIO()):  # keep stdout for the JSON
                meta = run(cfg)
            seconds.append(time.perf_counter() - wall0)
            cpu.append(time.process_time() - cpu0)
    tokens = meta["splits"]["train"]["tokens"] + meta["splits"]["val"]["tokens"]
    result = {
        "bench": "dataset",
        "data": args.data,
        "text_mb": round(text_bytes / 1e6, 2),
        "documents": meta["documents"]["kept"],
        "tokens": tokens,
        "bytes_per_token": round(text_bytes / tokens, 3),
        "best_mb_s": round(text_bytes / 1e6 / min(seconds), 2),
        "median_mb_s": round(text_bytes / 1e6 / statistics.median(seconds), 2),
        "seconds": [round(s, 2) for s in seconds],
        "cpu_seconds": [round(c, 2) for c in cpu],
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
