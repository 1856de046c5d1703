"""Generation speed: tokens/s with and without the KV cache, at batch 1 and batch 8, and the
fraction of the memory bandwidth that batch-1 decoding uses. Prints JSON.

    uv run python bench/bench_generate.py            # reference model size, CPU
    uv run python bench/bench_generate.py --busy     # also beside one busy process
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

Threads: each (batch, cache) setting decodes under its own `jobgpt.threads.ThreadPolicy`, as
`jobgpt generate` does (--threads N pins, 0 measures; the warm-up run lets it choose), and each
run reports the count it ran with and the policy's words (threads_chosen). Uncached runs use the
count the cached run of their batch chose (their steps grow with the context, which a measuring
policy would take for a machine getting busier).

Memory bandwidth: decoding one token at batch 1 reads every weight once (the tied vocab matrix
too; of the position table one row) and the KV cache of the tokens so far, and does little
arithmetic per byte, so its yardstick is memory bandwidth, not FLOP/s. memory_bandwidth is the
best read rate (sum of a --bandwidth-mib float32 tensor, larger than the caches) and copy rate
with torch's default threads, measured quiet; bytes_per_token_batch1 = parameter bytes in the
decoding dtype + the KV cache read at the run's mean context; fraction_of_bandwidth = batch-1
cached tokens/s x those bytes / the read rate.

--busy: the cached runs again beside one busy process that the bench starts and stops
(`bench/busy.py`), with fresh thread policies: `busy` holds its runs, threads and fraction of
the (quiet) bandwidth, busy_over_quiet the ratios per batch (target: >= 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import torch
from busy import busy_process  # bench/ is on sys.path when this file runs as a script
from run_all import machine_info

from jobgpt.config import GenerateConfig, ModelConfig
from jobgpt.model import GPT
from jobgpt.runtime import resolve_device
from jobgpt.sampling import generate_tokens
from jobgpt.threads import ThreadPolicy

PROMPT_TOKENS = 8
WARMUP_TOKENS = 16  # a warm-up run per setting: allocator, kernels, and the policy's first probe


def time_run(
    model: GPT, batch: int, new_tokens: int, use_cache: bool, device: torch.device,
    threads: ThreadPolicy | None = None,
) -> dict[str, Any]:  # fmt: skip
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
            top_p=cfg.top_p, generator=gen, use_cache=use_cache, threads=threads,
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
        "threads": threads.threads if threads and threads.enabled else torch.get_num_threads(),
        "threads_chosen": threads.describe() if threads else None,
    }


def run_condition(
    model: GPT, args: argparse.Namespace, device: torch.device, uncached: list[int]
) -> list[dict[str, Any]]:
    """Cached runs at --batches (best of --repeats) and uncached ones at `uncached` (once each),
    each setting under its own fresh thread policy, after a warm-up run."""
    policies: dict[tuple[int, bool], ThreadPolicy] = {}

    def run(batch: int, new_tokens: int, use_cache: bool) -> dict[str, Any]:
        if (batch, use_cache) not in policies:
            # Uncached steps grow with the context, which a measuring policy would take for a
            # machine getting busier: they run at the count the cached run of their batch chose.
            cached = policies.get((batch, True))
            pin = cached.threads if cached and not use_cache and cached.enabled else args.threads
            policies[batch, use_cache] = ThreadPolicy.for_decoding(pin, device)
        return time_run(model, batch, new_tokens, use_cache, device, policies[batch, use_cache])

    for batch in args.batches:
        run(batch, WARMUP_TOKENS, True)
    for batch in uncached:
        run(batch, WARMUP_TOKENS, False)
    # Cached runs take seconds: each batch size runs --repeats times, interleaved so a burst of
    # load from other processes does not fall on one of them only, and the best run counts
    # (other processes can only slow a run down). Uncached runs take minutes: once each.
    best: dict[int, dict] = {}
    for _ in range(args.repeats):
        for batch in args.batches:
            result = run(batch, args.new_tokens, True)
            if batch not in best or result["seconds"] < best[batch]["seconds"]:
                best[batch] = result
    return list(best.values()) + [run(b, args.new_tokens, False) for b in uncached]


def memory_bandwidth(device: torch.device, mib: int, repeats: int = 5) -> dict[str, Any]:
    """Best read (sum) and copy rates of a `mib` MiB float32 tensor, in GB/s."""
    x = torch.ones(mib * 2**20 // 4, device=device)
    y = torch.empty_like(x)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None

    def best_s(fn: Any) -> float:
        fn()  # warm-up: pages, kernels
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        return min(times)

    nbytes = x.numel() * x.element_size()
    read_s, copy_s = best_s(x.sum), best_s(lambda: y.copy_(x))
    return {
        "read_gb_s": round(nbytes / read_s / 1e9, 2),
        "copy_gb_s": round(2 * nbytes / copy_s / 1e9, 2),  # read + write
        "mib": mib,
        "threads": torch.get_num_threads(),
    }


def mean_context(prompt: int, new_tokens: int, block: int) -> float:
    """Mean tokens the model attends to per step, with `jobgpt.sampling`'s sliding window."""
    keep, start, total = max(1, block // 2), 0, 0
    for step in range(new_tokens):
        length = prompt + step
        if length - start > block:
            start = length - keep
        total += length - start
    return total / max(1, new_tokens)


def bytes_per_token(model: GPT, context: float) -> dict[str, Any]:
    """Bytes one batch-1 decoding step reads: every weight (the tied vocab matrix once; one row
    of the position table) and the cached keys and values of `context` tokens."""
    c, item = model.config, model.tok_emb.weight.element_size()
    weights = sum(p.numel() for p in model.parameters()) - (c.block_size - 1) * c.n_embd
    kv = 2 * c.n_layer * context * c.n_embd  # keys and values, every layer
    return {
        "weights": weights * item,
        "kv_cache": round(kv * item),
        "total": round((weights + kv) * item),
        "mean_context": round(context, 1),
    }


def summary(runs: list[dict[str, Any]], per_token: int, read_gb_s: float) -> dict[str, Any]:
    """A condition's headline: batch-1 cached tokens/s, its threads and bandwidth fraction."""
    one = next((r for r in runs if r["batch"] == 1 and r["kv_cache"]), None)
    return {
        "tokens_per_s_batch1": one["tokens_per_s"] if one else None,
        "fraction_of_bandwidth": (
            round(one["tokens_per_s"] * per_token / (read_gb_s * 1e9), 3) if one else None
        ),
        "threads": one["threads"] if one else None,
        "threads_chosen": one["threads_chosen"] if one else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads: N pins, 0 measures")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--uncached-batches", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5, help="cached runs: best of N")
    parser.add_argument("--busy", action="store_true", help="also run beside one busy process")
    parser.add_argument("--bandwidth-mib", type=int, default=512, help="bandwidth tensor size")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = GPT(ModelConfig()).to(device).eval()
    bandwidth = memory_bandwidth(device, args.bandwidth_mib)
    per_token = bytes_per_token(
        model, mean_context(PROMPT_TOKENS, args.new_tokens, model.config.block_size)
    )
    runs = run_condition(model, args, device, args.uncached_batches)
    busy_runs = None
    if args.busy:
        with busy_process():
            busy_runs = run_condition(model, args, device, [])
    rate = {(r["batch"], r["kv_cache"]): r["tokens_per_s"] for r in runs}
    cache_speedup = rate[1, True] / rate[1, False] if (1, False) in rate else None
    batch_gain = rate[8, True] / rate[1, True] if (8, True) in rate and (1, True) in rate else None
    quiet = summary(runs, per_token["total"], bandwidth["read_gb_s"])
    busy = None
    if busy_runs is not None:
        busy = summary(busy_runs, per_token["total"], bandwidth["read_gb_s"]) | {"runs": busy_runs}
        busy["over_quiet"] = {
            f"batch{r['batch']}": round(r["tokens_per_s"] / rate[r["batch"], True], 3)
            for r in busy_runs
        }
    machine = machine_info()
    result = {
        "bench": "generate",
        "model": "reference ModelConfig defaults, random weights",
        "params_m": round(model.num_params() / 1e6, 2),
        "prompt_tokens": PROMPT_TOKENS,
        "window_slides": int(PROMPT_TOKENS + args.new_tokens > model.config.block_size),
        "machine": {k: machine[k] for k in ("cpu_model", "cores", "torch", "device", "gpu")},
        "arch": platform.machine(),
        "device": str(device),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "torch_threads": quiet["threads"] or torch.get_num_threads(),
        "threads_chosen": quiet["threads_chosen"],
        "load_average_1min": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "runs": runs,
        "memory_bandwidth": bandwidth,
        "bytes_per_token_batch1": per_token,
        "fraction_of_bandwidth": quiet["fraction_of_bandwidth"],
        "quiet": quiet,
        "busy": busy,
        "busy_over_quiet": busy["over_quiet"] if busy else None,
        "cache_speedup_batch1": round(cache_speedup, 2) if cache_speedup else None,
        "batch8_over_batch1_cached": round(batch_gain, 2) if batch_gain else None,
        "targets_met": {
            "cache_speedup>=5": cache_speedup is not None and cache_speedup >= 5,
            "batch8_gain>=3": batch_gain is not None and batch_gain >= 3,
            "busy>=0.5x_quiet": all(v >= 0.5 for v in busy["over_quiet"].values())
            if busy
            else None,
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
