"""Training speed: tokens/s and model FLOP/s against this machine's matmul peak. Prints JSON.

    uv run python bench/bench_train.py                          # as `jobgpt train` would run
    uv run python bench/bench_train.py --no-keep-freed-memory   # without runtime.keep_freed_memory
    uv run python bench/bench_train.py --dtype bfloat16 --compile on --set model.dropout=0.1
    uv run python bench/bench_train.py --data-dir data          # your own bins
    uv run python bench/bench_train.py --corpus my.jsonl        # temp bins from this corpus
    uv run python bench/bench_train.py --busy                   # also beside one busy process

What it times: `Trainer.train_step` of the real trainer (forward, backward, clipping, AdamW,
zero_grad; batch sampling included) at the reference config (TrainConfig defaults: batch 16,
context 256, 6 layers, 6 heads, 384 dims) with the trainer's own device, precision and compile
choices, and glibc told to keep freed memory as the `jobgpt train` stage does, unless flags
override them. The data: a 24,000-token tokenizer and bins built once per
run in a temp dir from --corpus, else the real postings beside the repo (../shared/data), else the
synthetic demo corpus (setup is untimed and reported as setup_s).

Threads: the steps run under the `jobgpt.threads.ThreadPolicy` the trainer uses
(`ThreadPolicy.for_training`: --threads N pins, 0 measures); untimed steps first until its
first probe has chosen (threads_chosen says what it chose and measured). The trainer drives the
policy where it has one (`trainer.threads`), else this bench does, around `train_step`.

Figures: model FLOP/s = tokens/s x `GPT.flops_per_token()` (6 per weight + attention); the
matmul peak is the best of a large square matmul (--peak-square: 2048^3 on a CPU, 8192^3 on a
GPU) and the model's own matmul shapes (the shape of each distinct nn.Linear at batch x block
rows: qkv, projections, MLP, vocab head; forward only), measured in the trainer's compute dtype
right before and right after the timed steps with the threads the policy chose, so load from
other processes hits both alike. fraction_of_peak = model FLOP/s / that peak (and
fraction_of_square_peak, fraction_of_model_shapes_peak against each kind; matmul_shapes lists
each shape's best): on a CPU that trains in bf16 (autocast) the matmuls run in bf16, so dividing
by the fp32 peak would flatter the trainer. On a CPU the fp32 peak is measured too
(fp32_matmul_peak_flops, fraction_of_fp32_peak: the yardstick of the >= 0.75 target, set for fp32
training; equal to the above when the trainer runs in fp32). text_bytes_per_s = tokens/s x the
UTF-8 bytes per token of the data's validation windows.

On a GPU fraction_of_peak is MFU against a measured peak; mfu_nominal uses the datasheet peak of
known GPUs (H100, H200, A100), as MFU is usually quoted. GPT-2 small:
`--set model.n_layer=12 --set model.n_head=12 --set model.n_embd=768 --set model.block_size=1024`.

On a shared machine other processes take turns on the cores and stretch every step. Each step
and peak sample records its cpu share (process CPU seconds / wall seconds / threads; 1.0 = all
threads ran all the time). calm_fraction_of_peak uses only the steps with a share >= 0.95:
compare it with fraction_of_peak (all steps), and look at load_avg_1m.

--busy: after the quiet figures, the same again beside one busy process that the bench starts and
stops (`bench/busy.py`), with a fresh thread policy (as a run started on a busy machine): `busy`
holds its tokens/s, threads and fraction of the quiet peak, busy_over_quiet the ratio (target:
>= 0.5). The top-level figures are the quiet ones; `quiet` repeats the headline ones beside `busy`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from busy import busy_process  # bench/ is on sys.path when this file runs as a script
from run_all import machine_info

from jobgpt import precision, runtime
from jobgpt.config import DatasetConfig, TokenizerConfig, TrainConfig, make_config
from jobgpt.threads import ThreadPolicy

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_POSTINGS = SHARED_DATA / "wanted" / "postings.jsonl"
# A step or matmul during which the process got less than this share of its threads' time was
# slowed by other processes; `calm_*` figures use only the others.
CALM_SHARE = 0.95
# Dense bf16 tensor-core peaks from the vendor datasheets; the first matching name part wins.
NOMINAL_BF16_FLOPS = [("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12)]
# Untimed steps while the thread policy's first probe runs, at most (it needs 5 on 2 cores).
MAX_SETTLE_STEPS = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compile)")
    parser.add_argument("--dtype", help="override the trainer's --dtype (auto, float32, ...)")
    parser.add_argument("--compile", help="override the trainer's --compile (auto, on, off)")
    parser.add_argument("--device", help="override the trainer's --device")
    parser.add_argument(
        "--threads", type=int, default=0, help="the trainer's --threads: N pins, 0 measures"
    )
    parser.add_argument("--busy", action="store_true", help="also run beside one busy process")
    parser.add_argument(
        "--keep-freed-memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="call runtime.keep_freed_memory() first, as `jobgpt train` does",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="TrainConfig override, e.g. batch_size=8 or model.dropout=0 (repeatable)",
    )
    parser.add_argument("--data-dir", help="existing bins (train.bin, val.bin, meta.json)")
    parser.add_argument(
        "--corpus", help="corpus for the temp tokenizer and bins (default: ../shared or the demo)"
    )
    parser.add_argument(
        "--peak-square", type=int, help="side of the square peak matmul (2048 CPU, 8192 GPU)"
    )
    parser.add_argument("--vocab-size", type=int, default=24_000, help="tokenizer for temp data")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # the trainer's report: off
    allocator = runtime.keep_freed_memory() if args.keep_freed_memory else None

    with tempfile.TemporaryDirectory(prefix="jobgpt-bench-") as tmp:
        start = time.perf_counter()
        data_dir, corpus = args.data_dir, "given"
        if data_dir is None:
            data_dir, corpus = prepare_data(Path(tmp), args.vocab_size, args.corpus)
        setup_s = time.perf_counter() - start
        values = overrides(args)
        values.update(data_dir=str(data_dir), out_dir=f"{tmp}/run")
        result = bench(make_config(TrainConfig, values), args)
    result.update(
        corpus=corpus,
        setup_s=round(setup_s, 1),
        keep_freed_memory=allocator is not None,
        overrides=args.set,
    )
    print(json.dumps(result, ensure_ascii=False))


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """--set KEY=VALUE pairs (dotted keys nest) plus the dedicated flags, as make_config values."""
    values: dict[str, Any] = {}
    pairs = [item.split("=", 1) for item in args.set]
    pairs += [[k, v] for k in ("dtype", "compile", "device", "threads") if (v := getattr(args, k))]
    pairs = [[k, str(v)] for k, v in pairs]  # --threads is an int
    for key, raw in pairs:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw  # a plain string such as "cpu"
        *parents, leaf = key.split(".")
        node = values
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return values


def prepare_data(tmp: Path, vocab_size: int, given: str | None = None) -> tuple[Path, str]:
    """Tokenizer + bins in tmp from `given`, else the shared real postings, else the demo corpus."""
    from jobgpt import dataset, tokenizer
    from jobgpt.demo_corpus import write_demo_corpus

    corpus = Path(given) if given else SHARED_POSTINGS
    if not given and not corpus.is_file():
        corpus = write_demo_corpus(tmp / "samples.txt", n=3000, seed=1337)
    tok_path, data_dir = tmp / "tokenizer.json", tmp / "data"
    with contextlib.redirect_stdout(io.StringIO()):  # stdout is for the JSON
        tokenizer.run(
            make_config(
                TokenizerConfig,
                {"input": [str(corpus)], "vocab_size": vocab_size, "out": str(tok_path)},
            )
        )
        dataset.run(
            make_config(
                DatasetConfig,
                {"input": [str(corpus)], "tokenizer": str(tok_path), "out_dir": str(data_dir)},
            )
        )
    return data_dir, str(corpus)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds of fn() and how much of the cores the process got meanwhile (1.0 = all
    of torch's threads ran the whole time; less = other processes took turns on them)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall = time.perf_counter() - wall
    return wall, (time.process_time() - cpu) / wall / torch.get_num_threads()


def peak_shapes(trainer: Any, square: int) -> dict[str, tuple[int, int, int]]:
    """name -> (m, k, n) of the peak matmuls: a square, and the shape of each distinct nn.Linear
    of the model at batch x block rows (the reference: 4096 x 384 x 1152 for qkv, ...)."""
    rows = trainer.cfg.batch_size * trainer.model_config.block_size
    shapes = {"square": (square, square, square)}
    for name, module in trainer.raw_model.named_modules():
        shape = (rows, getattr(module, "in_features", 0), getattr(module, "out_features", 0))
        if isinstance(module, torch.nn.Linear) and shape not in shapes.values():
            shapes[name] = shape
    return shapes


def matmul_peak_samples(
    device: torch.device,
    dtype: torch.dtype,
    shapes: dict[str, tuple[int, int, int]],
    repeats: int = 3,
) -> dict[str, list[tuple[float, float]]]:
    """name -> (FLOP/s, cpu share) samples of `dtype` matmuls of each shape on `device`.

    The dtype is the trainer's compute dtype, so the fraction compares like with like (on a GPU:
    a measured MFU); on a CPU also float32, the issue's yardstick. The cpu share means nothing on
    a GPU (reported as 1.0).
    """
    on_gpu = device.type == "cuda"
    samples: dict[str, list[tuple[float, float]]] = {}
    for name, (m, k, n) in shapes.items():
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)

        def matmul(a=a, b=b) -> None:
            a @ b
            if on_gpu:
                torch.cuda.synchronize()

        matmul()  # warm-up
        samples[name] = []
        for _ in range(repeats):
            seconds, share = timed(matmul)
            samples[name].append((2 * m * k * n / seconds, 1.0 if on_gpu else share))
    return samples


def nominal_peak(device: torch.device, dtype: torch.dtype) -> float | None:
    """Datasheet dense bf16/fp16 tensor-core FLOP/s of known GPUs (for MFU as usually quoted)."""
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return None
    name = torch.cuda.get_device_name(device)
    for part, flops in NOMINAL_BF16_FLOPS:
        if part in name:
            return flops
    return None


def policy_step(trainer: Any, policy: ThreadPolicy) -> Callable[[], None]:
    """One training step under `policy`: the trainer drives it where it has one (`threads`),
    else the bench does, around train_step, as the trainer would."""
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else lambda: None
    own = hasattr(trainer, "threads")
    if own:
        trainer.threads = policy

    def step() -> None:
        if not own:
            policy.before_step()
        trainer.train_step().item()  # .item() and sync(): timed until it has really finished
        sync()
        if not own:
            policy.after_step(trainer.tokens_per_step)

    return step


def run_condition(
    trainer: Any,
    args: argparse.Namespace,
    shapes: dict[str, tuple[int, int, int]],
    dtypes: list[torch.dtype],
    settle_at_least: int,
) -> dict[str, Any]:
    """Timed steps under a fresh thread policy, after untimed ones until it has chosen, with
    the matmul peaks of `dtypes` measured right before and after them at the chosen threads."""
    policy = ThreadPolicy.for_training(trainer.cfg.threads, trainer.device)
    step = policy_step(trainer, policy)
    start, settle = time.perf_counter(), 0
    while settle < MAX_SETTLE_STEPS and (settle < settle_at_least or policy.probing):
        step()
        settle += 1
    settle_s = time.perf_counter() - start
    peaks = {dtype: matmul_peak_samples(trainer.device, dtype, shapes) for dtype in dtypes}
    steps = [timed(step) for _ in range(args.steps)]
    for dtype in dtypes:
        for name, samples in matmul_peak_samples(trainer.device, dtype, shapes).items():
            peaks[dtype][name] += samples
    walls = [wall for wall, _ in steps]
    return {
        "steps": steps,
        "peaks": peaks,
        "tokens_per_s": trainer.tokens_per_step / statistics.median(walls),
        "threads": torch.get_num_threads(),
        "threads_chosen": policy.describe(),
        "settle_steps": settle,
        "settle_s": settle_s,
    }


def best(samples: dict[str, list[tuple[float, float]]], names: list[str] | None = None) -> float:
    """The best FLOP/s of the samples of `names` (all shapes: None)."""
    return max(f for name in names or list(samples) for f, _ in samples[name])


def headline(cond: dict[str, Any], flops_per_token: float, peak: float) -> dict[str, Any]:
    """One condition's figures for the `quiet` and `busy` keys."""
    return {
        "tokens_per_s": round(cond["tokens_per_s"], 1),
        "fraction_of_peak": round(cond["tokens_per_s"] * flops_per_token / peak, 3),
        "threads": cond["threads"],
        "threads_chosen": cond["threads_chosen"],
        "settle_steps": cond["settle_steps"],
        "step_s": [round(wall, 3) for wall, _ in cond["steps"]],
        "step_cpu_share": [round(share, 2) for _, share in cond["steps"]],
    }


def bench(cfg: TrainConfig, args: argparse.Namespace) -> dict[str, Any]:
    from jobgpt.trainer import Trainer

    trainer = Trainer(cfg)
    on_cpu = trainer.device.type == "cpu"
    # The peak in the dtype the matmuls really run in (autocast); on a CPU also fp32's.
    peak_dtype = trainer.dtype
    dtypes = [peak_dtype] + ([torch.float32] if on_cpu and peak_dtype != torch.float32 else [])
    square = args.peak_square or (2048 if on_cpu else 8192)
    shapes = peak_shapes(trainer, square)
    load_before = os.getloadavg()[0]
    quiet = run_condition(trainer, args, shapes, dtypes, settle_at_least=args.warmup)
    busy = None
    if args.busy:
        with busy_process():
            busy = run_condition(trainer, args, shapes, [], settle_at_least=0)
    peaks, steps = quiet["peaks"], quiet["steps"]
    peak = best(peaks[peak_dtype])
    model_shapes = [name for name in shapes if name != "square"]
    fp32_peak = best(peaks[torch.float32]) if on_cpu else None
    nominal = nominal_peak(trainer.device, peak_dtype)

    tokens, flops_per_token = trainer.tokens_per_step, trainer.raw_model.flops_per_token()
    calm = [wall for wall, share in steps if share >= CALM_SHARE]
    tokens_per_s = quiet["tokens_per_s"]
    val_targets = trainer.eval_sets["val"][1]
    bytes_per_token = trainer.val_bytes / val_targets.size
    flag = precision.cpu_bf16_flag()
    model_flops = flops_per_token * tokens_per_s
    machine = machine_info()
    result = {
        "bench": "train",
        "loop": "trainer",
        "machine": {k: machine[k] for k in ("cpu_model", "cores", "torch", "device", "gpu")},
        "device": str(trainer.device),
        "cpu_model": precision.cpu_name(),
        "cpu_bf16_flag": flag,
        "has_avx512_bf16": flag in ("avx512_bf16", "amx_bf16"),  # AMX CPUs have both
        "dtype": str(trainer.dtype).removeprefix("torch."),
        "dtype_reason": trainer.dtype_why,
        "compile": trainer.compile_why,
        "threads": quiet["threads"],
        "threads_chosen": quiet["threads_chosen"],  # the policy's own words
        "threads_by": "trainer" if hasattr(trainer, "threads") else "bench",
        "params": trainer.raw_model.num_params(),
        "tokens_per_step": tokens,
        "flops_per_token": flops_per_token,
        "tokens_per_s": round(tokens_per_s, 1),
        "model_flops_per_s": round(model_flops),
        "peak_dtype": str(peak_dtype).removeprefix("torch."),  # the trainer's compute dtype
        "peak_shapes": [list(shape) for shape in shapes.values()],
        "matmul_peak_flops": round(peak),
        "fraction_of_peak": round(model_flops / peak, 3),
        "square_peak_flops": round(best(peaks[peak_dtype], ["square"])),
        "fraction_of_square_peak": round(model_flops / best(peaks[peak_dtype], ["square"]), 3),
        "model_shapes_peak_flops": round(best(peaks[peak_dtype], model_shapes)),
        "fraction_of_model_shapes_peak": round(
            model_flops / best(peaks[peak_dtype], model_shapes), 3
        ),
        "matmul_shapes": [
            {"name": name, "shape": list(shape), "flops": round(best(peaks[peak_dtype], [name]))}
            for name, shape in shapes.items()
        ],
        # On a CPU: the fp32 peak, the yardstick (= the above when training in fp32).
        "fp32_matmul_peak_flops": round(fp32_peak) if fp32_peak else None,
        "fraction_of_fp32_peak": round(model_flops / fp32_peak, 3) if fp32_peak else None,
        "nominal_peak_flops": nominal,
        "mfu_nominal": round(model_flops / nominal, 3) if nominal else None,
        # The same from the steps that had the cores to themselves (cpu share >= CALM_SHARE):
        "calm_steps": len(calm),
        "calm_fraction_of_peak": (
            round(flops_per_token * tokens / statistics.median(calm) / peak, 3) if calm else None
        ),
        "bytes_per_token": round(bytes_per_token, 3),
        "bytes_per_token_source": f"UTF-8 bytes of {val_targets.size:,} validation targets",
        "text_bytes_per_s": round(tokens_per_s * bytes_per_token),
        "step_s": [round(wall, 3) for wall, _ in steps],
        "step_cpu_share": [round(share, 2) for _, share in steps],
        "peak_cpu_share_min": round(
            min((s for by_shape in peaks.values() for v in by_shape.values() for _, s in v)), 2
        ),
        "warmup_s": round(quiet["settle_s"], 1),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "torch": torch.__version__,
        "quiet": headline(quiet, flops_per_token, peak),
        "busy": headline(busy, flops_per_token, peak) if busy else None,  # against the quiet peak
        "busy_over_quiet": round(busy["tokens_per_s"] / tokens_per_s, 3) if busy else None,
    }
    result["targets_met"] = {
        "fraction_of_peak>=0.5": result["fraction_of_peak"] >= 0.5,
        "busy>=0.5x_quiet": busy["tokens_per_s"] >= 0.5 * tokens_per_s if busy else None,
    }
    trainer.close()
    return result


if __name__ == "__main__":
    main()
