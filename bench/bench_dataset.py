"""Dataset-stage throughput: real postings -> train.bin/val.bin, end to end.

    uv run python bench/bench_dataset.py [--data PATH] [--repeat 3]

Trains a tokenizer first (untimed), then times `jobgpt dataset` (reading, parsing, dedup,
grouping, encoding, writing) and prints one JSON object. MB/s counts the UTF-8 text of the
documents. Target: >= 8 MB/s on 2 cores. On a shared machine, look at load_avg_1m: other
processes on the same cores slow every run; best_mb_s is the least disturbed one.

Between the timed runs it also times the tokenizer alone (`encode_batch_fast` on the same
documents, already in memory, in the stage's batches): `encoder_mb_s` is the ceiling the
stage works against, and `fraction_of_encoder` compares the two measured side by side, which
stays meaningful when the machine's speed drifts between runs. `--byte-level` adds the same
timing for a GPT-2-style byte-level BPE of the same vocab size trained on the same text, for
scale: what the library's encoder does with the conventional design.
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

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from jobgpt.config import DatasetConfig, make_config
from jobgpt.corpus import iter_documents
from jobgpt.dataset import run, text_batches
from jobgpt.tokenizer import save_tokenizer, train_tokenizer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wanted" / "postings.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="corpus file (.jsonl)")
    parser.add_argument("--vocab-size", type=int, default=24_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (best and median)")
    parser.add_argument(
        "--byte-level", action="store_true", help="also time a byte-level BPE encoder, for scale"
    )
    args = parser.parse_args()

    texts = [doc.text for doc in iter_documents([args.data])]
    text_bytes = sum(len(text.encode("utf-8")) for text in texts)
    with tempfile.TemporaryDirectory() as tmp:
        tok_path = save_tokenizer(
            train_tokenizer((d.text for d in iter_documents([args.data])), args.vocab_size),
            Path(tmp) / "tokenizer.json",
        )
        cfg = make_config(
            DatasetConfig,
            {
                "input": [args.data],
                "tokenizer": str(tok_path),
                "out_dir": f"{tmp}/data",
                "overwrite": True,  # every timed run after the first replaces the bins
            },
        )
        byte_level_path = None
        if args.byte_level:
            byte_level_path = _byte_level_tokenizer(texts, args.vocab_size, tmp)
        seconds, cpu, encoder, byte_level = [], [], [], []
        for _ in range(args.repeat):
            encoder.append(_time_encoder(tok_path, texts))
            if byte_level_path is not None:
                byte_level.append(_time_encoder(byte_level_path, texts))
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
        "encoder_mb_s": round(text_bytes / 1e6 / min(encoder), 2),
        "encoder_seconds": [round(s, 2) for s in encoder],
        "fraction_of_encoder": round(min(encoder) / min(seconds), 3),
        **(
            {"byte_level_encoder_mb_s": round(text_bytes / 1e6 / min(byte_level), 2)}
            if byte_level
            else {}
        ),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, ensure_ascii=False))


def _byte_level_tokenizer(texts: list[str], vocab_size: int, tmp: str) -> Path:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    path = Path(tmp) / "byte_level.json"
    tok.save(str(path))
    return path


def _time_encoder(tok_path: Path, texts: list[str]) -> float:
    """Seconds for the tokenizer alone to encode ``texts``, batched as the stage batches them."""
    tok = Tokenizer.from_file(str(tok_path))  # fresh: its word cache starts cold, as in a run
    batches = [batch for batch, _ in text_batches((t, len(t.encode("utf-8"))) for t in texts)]
    start = time.perf_counter()
    for batch in batches:
        tok.encode_batch_fast(batch, add_special_tokens=False)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
