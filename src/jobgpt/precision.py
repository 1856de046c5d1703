"""Which autocast precision to train in, and why: the per-device decision and the CPU bf16 probe.

Precision is the autocast *compute* dtype: weights, gradients and optimizer state stay float32,
matmuls run in the chosen dtype. Which one is fastest depends on the machine, so `choose_dtype`
decides per device and returns a one-line reason for the start-up report:

- CUDA: bfloat16 on GPUs that compute it natively (compute capability 8.0+), else float16 with a
  GradScaler.
- Apple MPS: float32. PyTorch added MPS autocast recently (float16 in 2.5, bfloat16 in 2.6 on
  macOS 14+, GradScaler in 2.8); float32 is the conservative choice until it has a track record.
- CPU: bfloat16 only where it is really faster. An AMD EPYC with AVX512_BF16 ran a bf16 matmul
  ~4x faster than fp32 and trained ~1.6x faster; an AVX2-only EPYC emulates bf16 and ran the same
  matmul ~70x *slower*. A sub-second matmul probe measures which kind of CPU this is.

Applying the choice (the autocast context) is `jobgpt.runtime`'s job; this module only decides.
"""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from jobgpt.errors import ConfigError

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}

# A bf16 matmul must beat fp32 by this much before `auto` picks bf16 on a CPU: only the matmuls
# get faster, while autocast adds casts around them, so a small matmul gain is no training gain.
# Native bf16 measured ~4x (AVX512_BF16); emulated bf16 ~0.015x. 1.5 sits far from both.
BF16_MIN_SPEEDUP = 1.5


# --- the decision ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuBf16:
    """What this CPU offers for bfloat16 matmuls.

    flag: the CPU feature that promises native bf16 ("amx_bf16", "avx512_bf16", ARM "bf16",
    macOS "FEAT_BF16"), or None where none is reported. speedup: bf16 matmul throughput divided
    by fp32's, as measured by the probe. The measurement decides; the flag explains it.
    """

    flag: str | None
    speedup: float

    @property
    def fast(self) -> bool:
        return self.speedup >= BF16_MIN_SPEEDUP

    def describe(self) -> str:
        has = f"has native bf16 ({self.flag})" if self.flag else "reports no native bf16"
        return f"this CPU {has} and ran a bf16 matmul at {self.speedup:.2g}x fp32 speed"


def choose_dtype(
    device: torch.device, requested: str = "auto", *, cpu_bf16: CpuBf16 | None = None
) -> tuple[torch.dtype, str]:
    """The autocast compute dtype for `device` (torch.float32 = no autocast) and why.

    requested: auto, float32, bfloat16 or float16 (fp32/bf16/fp16 also accepted). float16 needs
    its loss scaled so small gradients do not underflow: whenever this returns torch.float16,
    the trainer must use `torch.amp.GradScaler(device.type)`; never for the other dtypes.
    cpu_bf16: the CPU's measured bf16 support; None measures it (cached per process).
    """
    name = _dtype_name(requested)
    if name == "float32":
        return torch.float32, "--dtype float32 (no autocast)"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        gpu = f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor})"
        return gpu_dtype(name, native_bf16=major >= 8, gpu=gpu)
    if device.type == "mps":
        return mps_dtype(name)
    return cpu_dtype(name, cpu_bf16 if cpu_bf16 is not None else cpu_bf16_support())


def _dtype_name(requested: str) -> str:
    name = ALIASES.get(requested, requested)
    if name != "auto" and name not in DTYPES:
        raise ConfigError(
            f"unknown --dtype {requested!r}", "use auto, float32, bfloat16 or float16"
        )
    return name


def cpu_dtype(name: str, bf16: CpuBf16) -> tuple[torch.dtype, str]:
    """The CPU decision, given a validated dtype name and the CPU's bf16 support."""
    if name == "float16":
        raise ConfigError(
            "--dtype float16 is not supported on the CPU: CPUs have no fast float16 matmuls and "
            "training in float16 needs loss scaling",
            "use --dtype auto (bfloat16 where this CPU has native bf16, else float32)",
        )
    if name == "bfloat16":
        if not bf16.fast:
            logger.warning(
                "warning: --dtype bfloat16 on a CPU without fast bf16 (%s): training will be "
                "much slower than float32",
                bf16.describe(),
            )
        return torch.bfloat16, f"--dtype bfloat16 ({bf16.describe()})"
    if bf16.fast:
        return torch.bfloat16, f"auto: bfloat16 autocast, because {bf16.describe()}"
    return torch.float32, f"auto: float32, because {bf16.describe()}"


def gpu_dtype(name: str, native_bf16: bool, gpu: str) -> tuple[torch.dtype, str]:
    """The CUDA decision: bf16 where the GPU computes it natively, else fp16 with loss scaling."""
    scaled = "; the loss is scaled (GradScaler) so small float16 gradients do not underflow"
    if name == "bfloat16" and not native_bf16:
        raise ConfigError(
            f"--dtype bfloat16 needs a GPU with native bfloat16 (compute capability 8.0+, "
            f"Ampere or newer); {gpu} has none",
            "use --dtype auto (float16 with loss scaling here) or --dtype float32",
        )
    if name == "auto":
        if native_bf16:
            return torch.bfloat16, f"auto: bfloat16 autocast, {gpu} computes bf16 natively"
        return torch.float16, f"auto: float16 autocast, {gpu} has no native bf16{scaled}"
    return DTYPES[name], f"--dtype {name} on {gpu}" + (scaled if name == "float16" else "")


def mps_dtype(name: str) -> tuple[torch.dtype, str]:
    """The Apple-GPU decision: float32 unless asked, and only what this torch supports."""
    if name == "auto":
        return torch.float32, (
            "auto: float32 on Apple MPS; MPS autocast is recent (bfloat16 since torch 2.6) and "
            "not yet a proven training path (--dtype bfloat16 to try it)"
        )
    needs = {"bfloat16": "2.6", "float16": "2.8"}  # MPS bf16 autocast; MPS GradScaler for fp16
    if name in needs and torch.__version__ < needs[name]:
        raise ConfigError(
            f"--dtype {name} on MPS needs torch {needs[name]}+, this is torch {torch.__version__}",
            "upgrade torch (uv add 'torch>=2.8') or use --dtype float32",
        )
    scaled = "; the loss is scaled (GradScaler)" if name == "float16" else ""
    return DTYPES[name], f"--dtype {name} on Apple MPS (experimental there){scaled}"


# --- measuring the CPU -------------------------------------------------------------------------


@functools.cache
def cpu_bf16_support() -> CpuBf16:
    """The CPU's bf16 flag and measured bf16/fp32 matmul speed ratio; < 0.5 s, once per process."""
    started, threads = time.perf_counter(), torch.get_num_threads()
    # The ratio is a property of the kernels, so measure it on one thread: a multi-threaded
    # matmul waits for its slowest thread, and on a busy machine that is a time slice (~16 ms).
    torch.set_num_threads(1)
    try:
        speedup = matmul_flops(torch.bfloat16) / matmul_flops(torch.float32)
    finally:
        torch.set_num_threads(threads)
    support = CpuBf16(flag=cpu_bf16_flag(), speedup=speedup)
    logger.debug("bf16 probe: %s (%.2f s)", support.describe(), time.perf_counter() - started)
    return support


def matmul_flops(
    dtype: torch.dtype, shape: tuple[int, int, int] = (128, 384, 1536), seconds: float = 0.1
) -> float:
    """FLOP/s of an (m, k) @ (k, n) matmul on the CPU, best call within about `seconds`.

    The default shape is one of the reference model's (width 384 -> MLP 1,536) at 128 rows:
    small enough that an emulated-bf16 call (~0.1 s) keeps the probe short. Best-of-calls skips
    the first call's one-off setup and the moments another process held the core.
    """
    m, k, n = shape
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    best, spent, calls = float("inf"), 0.0, 0
    while calls < 2 or spent < seconds:
        start = time.perf_counter()
        torch.mm(a, b)
        took = time.perf_counter() - start
        best, spent, calls = min(best, took), spent + took, calls + 1
    return 2 * m * k * n / best


def cpu_bf16_flag(cpuinfo: str | None = None) -> str | None:
    """The CPU feature flag that promises native bf16 matmuls, or None.

    Linux: /proc/cpuinfo (x86 "flags", ARM "Features"); macOS: sysctl FEAT_BF16 (Apple M2+).
    """
    if cpuinfo is None:
        if sys.platform == "darwin":
            return "FEAT_BF16" if _sysctl("hw.optional.arm.FEAT_BF16") == "1" else None
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags = set(value.split())
            return next((f for f in ("amx_bf16", "avx512_bf16", "bf16") if f in flags), None)
    return None


def cpu_name() -> str:
    """A human name for this CPU ("AMD EPYC", "Apple M3"...), for reports."""
    if sys.platform == "darwin":
        return _sysctl("machdep.cpu.brand_string") or "Apple CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _sysctl(key: str) -> str:
    try:
        result = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip()
