"""Generation speed: tokens/s with and without the KV cache, at batch 1 and batch 8. Prints JSON.

    uv run python bench/bench_generate.py            # reference model size, CPU
    uv run python bench/bench_generate.py --device cuda

What it does, honestly: the reference architecture (ModelConfig defaults: vocab 24,000, context
256, 6 layers, 6 heads, 384 dims) with random weights, an 8-token prompt and 256 new tokens per
row, sampled with the CLI's default settings (temperature 0.8, top-k 50, top-p 0.95) and no stop
tokens, so every row runs all 256 steps. 8 + 256 = 264 tokens do not fit the 256-token window,
so both paths slide once (at 256 tokens, continuing from the last 128; see jobgpt.sampling): the
cached path pays one 128-token re-prefill, the uncached path recomputes its whole window every
step. The time covers everything `generate_tokens` does per step (forward, sampling, the device
sync), after one warm-up run; cached runs report the best of --repeats. Targets: cached >= 5x
uncached at batch 1; batch 8 >= 3x the aggregate tokens/s of batch 1 (cached).

On a machine busy with other work, pass --threads 1: torch's worker threads spin waiting for each
other on every small matmul, and one descheduled thread stalls them all (we measured 65 ms per
step with 2 threads against 2 ms with 1 for a tiny model on a loaded 2-core VM).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from jobgpt.config import GenerateConfig, ModelConfig
from jobgpt.model import GPT
from jobgpt.runtime import resolve_device
from jobgpt.sampling import generate_tokens

PROMPT_TOKENS = 8


def time_run(
    model: GPT, batch: int, new_tokens: int, use_cache: bool, device: torch.device
) -> dict:
    cfg = GenerateConfig()
    gen = torch.Generator(device=device).manual_seed(0)
    prompt = torch.randint(0, model.config.vocab_size, (batch, PROMPT_TOKENS), generator=gen,
                           device=device)  # fmt: skip
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    sync()
    start = time.perf_counter()
    steps = sum(
        1
        for _ in generate_tokens(
            model, prompt, new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
            top_p=cfg.top_p, generator=gen, use_cache=use_cache,
        )
    )  # fmt: skip
    sync()
    seconds = time.perf_counter() - start
    return {
        "batch": batch,
        "kv_cache": use_cache,
        "new_tokens": steps,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(batch * steps / seconds, 1),
        "ms_per_step": round(1000 * seconds / steps, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--uncached-batches", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5, help="cached runs: best of N")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = GPT(ModelConfig()).to(device).eval()
    time_run(model, 1, 16, True, device)  # warm-up: allocator, kernels, thread pool
    time_run(model, 1, 16, False, device)
    # Cached runs take seconds: each batch size runs --repeats times, interleaved so a burst of
    # load from other processes does not fall on one of them only, and the best run counts
    # (other processes can only slow a run down). Uncached runs take minutes: once each.
    best: dict[int, dict] = {}
    for _ in range(args.repeats):
        for batch in args.batches:
            run = time_run(model, batch, args.new_tokens, True, device)
            if batch not in best or run["seconds"] < best[batch]["seconds"]:
                best[batch] = run
    runs = list(best.values())
    runs += [time_run(model, b, args.new_tokens, False, device) for b in args.uncached_batches]
    rate = {(r["batch"], r["kv_cache"]): r["tokens_per_s"] for r in runs}
    cache_speedup = rate[1, True] / rate[1, False] if (1, False) in rate else None
    batch_gain = rate[8, True] / rate[1, True] if (8, True) in rate and (1, True) in rate else None
    print(
        json.dumps(
            {
                "bench": "generate",
                "model": "reference ModelConfig defaults, random weights",
                "params_m": round(model.num_params() / 1e6, 2),
                "prompt_tokens": PROMPT_TOKENS,
                "window_slides": 1
                if PROMPT_TOKENS + args.new_tokens > model.config.block_size
                else 0,
                "device": str(device),
                "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
                "torch_threads": torch.get_num_threads(),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "torch": torch.__version__,
                "machine": f"{platform.machine()}, {platform.processor() or '?'}",
                "runs": runs,
                "cache_speedup_batch1": round(cache_speedup, 2) if cache_speedup else None,
                "batch8_over_batch1_cached": round(batch_gain, 2) if batch_gain else None,
                "targets_met": {
                    "cache_speedup>=5": cache_speedup is not None and cache_speedup >= 5,
                    "batch8_gain>=3": batch_gain is not None and batch_gain >= 3,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
