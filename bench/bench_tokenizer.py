"""Tokenizer compression benchmark: train on 95% of real postings, measure on the other 5%.

    uv run python bench/bench_tokenizer.py [--data PATH] [--vocab-size 24000]

Prints one JSON object: UTF-8 bytes per token and exact round-trip rate on the held-out 5%,
training seconds (wall and CPU). Target: >= 6.5 bytes/token at vocab 24,000, 100% round trip.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

from jobgpt.corpus import iter_documents
from jobgpt.tokenizer import measure, train_tokenizer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wanted" / "postings.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="corpus file (.jsonl)")
    parser.add_argument("--vocab-size", type=int, default=24_000)
    parser.add_argument("--seed", type=int, default=1337, help="seed of the 95/5 document split")
    args = parser.parse_args()

    docs = [doc.text for doc in iter_documents([args.data])]
    random.Random(args.seed).shuffle(docs)
    n_test = len(docs) // 20
    test, train = docs[:n_test], docs[n_test:]

    wall, cpu = time.perf_counter(), time.process_time()
    tok = train_tokenizer(train, args.vocab_size)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    health = measure(tok, test)
    result = {
        "bench": "tokenizer",
        "data": args.data,
        "train_docs": len(train),
        "test_docs": len(test),
        "vocab_requested": args.vocab_size,
        "vocab_achieved": tok.get_vocab_size(),
        "bytes_per_token": round(health.bytes_per_token, 3),
        "round_trip": health.round_trip,
        "byte_fallback_rate": round(health.byte_fallback, 6),
        "train_seconds": round(wall, 2),
        "train_cpu_seconds": round(cpu, 2),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
