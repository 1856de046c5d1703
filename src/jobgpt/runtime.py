"""Where and how tensors run: the device, autocast, compilation, distribution, stop requests and
the process's memory behaviour.

The model never sees any of this; stages call these helpers and move the model themselves. Which
precision to run in is decided by `jobgpt.precision`; `autocast_context` applies the decision.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from jobgpt.errors import ConfigError

logger = logging.getLogger(__name__)

# uv (and other wrappers without a terminal) forward the Ctrl-C that the child also receives:
# a second SIGINT this soon after the first is the same keypress, not a request to quit at once.
SAME_INTERRUPT_S = 2.0


def resolve_device(spec: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit choice is checked, not trusted."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(
            f"unknown device {spec!r}", "use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {spec!r} asked for, but CUDA is not available here",
            "use --device auto or --device cpu",
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"device {spec!r} asked for, but Apple MPS is not available here",
            "use --device auto or --device cpu",
        )
    return device


def describe_device(device: torch.device) -> str:
    """The device in the start-up report's words: "cuda (NVIDIA H200)", "cpu (2 threads)"."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads:,} thread{'' if threads == 1 else 's'})"
    return device.type


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A batch on `device`; on CUDA through pinned host memory, so the copy overlaps compute."""
    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def autocast_context(device: torch.device, dtype: torch.dtype) -> AbstractContextManager:
    """Run the enclosed forward pass in `dtype` (matmuls) with float32 weights; float32 = as is."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def wrap_model(
    model: torch.nn.Module, compile_spec: str, device: torch.device, dist: Dist
) -> tuple[torch.nn.Module, str]:
    """torch.compile (if chosen), then DDP (if distributed) around `model`; and the choice of
    compile in words, for the report."""
    use, why = compile_choice(compile_spec, device)
    wrapped = dist.wrap(torch.compile(model) if use else model, device)
    return wrapped, f"{'on' if use else 'off'} ({why})"


def compile_choice(spec: str, device: torch.device) -> tuple[bool, str]:
    """Whether to torch.compile the model (--compile auto/on/off), and why, for the report."""
    if spec != "auto":
        return spec == "on", f"--compile {spec}"
    if device.type == "cuda":
        return True, "auto: on for CUDA"
    return False, (
        f"auto: off on {device.type}; compiling costs more than it saves on short runs here "
        "(--compile on to try)"
    )


# --- distribution ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 when run on its own).

    The collectives below are what the trainer needs; alone, each is a no-op, so callers need
    no branch for the single-process case.
    """

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """`model` in DistributedDataParallel (it averages gradients during backward)."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Sum (op "sum") or maximum (op "max") of `tensor` over all ranks, in place."""
        if self.enabled:
            import torch.distributed as dist

            reduce_op = dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM
            dist.all_reduce(tensor, op=reduce_op)
        return tensor

    def mean_and_any(self, value: torch.Tensor, flag: torch.Tensor) -> tuple[float, bool]:
        """`value`'s mean over ranks and whether `flag` is set on any, in one exchange (and one
        wait for the device)."""
        packed = self.all_reduce(torch.stack([value.float(), flag.float()]))
        packed[0] /= self.world_size
        mean, any_set = packed.tolist()
        return mean, bool(any_set)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (picklable objects)."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def leave(self) -> None:
        """Leave the torchrun job (if we joined one)."""
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def init_distributed(device_spec: str) -> tuple[Dist, torch.device]:
    """Join the torchrun job if there is one (NCCL on GPUs, gloo on the CPU); pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_spec)
    if world_size == 1:
        return Dist(), device
    import torch.distributed as dist

    if device.type == "mps":
        raise ConfigError(
            "multi-process training (torchrun) needs CUDA GPUs or the CPU, not Apple MPS",
            "run without torchrun on a Mac, or add --device cpu",
        )
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size()), device


# --- stop requests -----------------------------------------------------------------------------


class StopRequests:
    """Ctrl-C and SIGTERM become a request to stop after the current step (which then saves).

    A second Ctrl-C interrupts at once (KeyboardInterrupt), unless it is an echo of the first
    (within SAME_INTERRUPT_S) or the final checkpoint is being written (`saving`). Handlers are
    installed for the `with` block, and only from the main thread (the only one Python lets).
    `clock` returns seconds (time.monotonic); tests pass their own.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.signum: int | None = None
        self.saving = False
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        self.signum, self.saving = None, False  # each `with` block asks afresh
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self.handle)
        return self

    def handle(self, signum: int, frame: Any = None) -> None:
        """The signal handler: the first signal asks to stop; see the class for the rest."""
        if self.signum is not None:
            echo = self.clock() - self._first_at < SAME_INTERRUPT_S
            if signum != signal.SIGINT or echo:
                return  # already stopping
            if self.saving:
                logger.warning("still writing the checkpoint; it takes a moment")
                return
            raise KeyboardInterrupt
        self.signum, self._first_at = signum, self.clock()
        logger.warning(
            "%s: stopping after this step and saving (a Ctrl-C more than %g s later quits at "
            "once; 학습을 저장하고 멈춥니다)",
            signal.Signals(signum).name,
            SAME_INTERRUPT_S,
        )

    def __exit__(self, *exc: Any) -> None:
        if self.signum == signal.SIGINT and self._previous:
            # An echo may still be on its way; after restoring the default handler it would
            # interrupt whatever runs next, so stay deaf to it for the rest of the window.
            time.sleep(max(self._first_at + SAME_INTERRUPT_S - self.clock(), 0.0))
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def after_step(
        self,
        dist: Dist,
        device: torch.device,
        over_budget: bool,
        progress: float,
        budget: str = "time budget used",
    ) -> tuple[str | None, float]:
        """Why to stop after this step (None: go on): a signal ("stopped by SIGTERM"), or
        `budget` where the time budget ran out (`over_budget` on this rank); and the schedule's
        clock progress for the next step (`progress` on this rank). Under DDP all ranks agree on
        both in one tiny all-reduce per step (the maximum: a rank may see a signal late, and its
        clock differs), so all stop together and set the same learning rate; the tensor they
        exchange lives on `device`."""
        code = 2 if self.signum is not None else 1 if over_budget else 0
        if dist.enabled:
            agreed = torch.tensor([code, progress], dtype=torch.float32, device=device)
            code, progress = dist.all_reduce(agreed, op="max").tolist()
            code = int(code)
            if code == 2 and self.signum is None:  # another rank's signal: stop as if sent here
                self.signum = signal.SIGTERM
        if code == 2:
            return f"stopped by {signal.Signals(self.signum).name}", progress
        return (budget if code == 1 else None), progress


# --- memory ------------------------------------------------------------------------------------

# What allocators say when memory runs out: CUDA and MPS ("... out of memory"), and the CPU's
# DefaultCPUAllocator ("can't allocate memory", or "not enough memory" on Windows).
OOM_MESSAGES = ("out of memory", "can't allocate memory", "not enough memory")


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is an allocator's out-of-memory error, on any device."""
    text = str(err).lower()
    return isinstance(err, torch.cuda.OutOfMemoryError) or any(m in text for m in OOM_MESSAGES)


def keep_freed_memory() -> str | None:
    """Stop glibc from returning freed memory to the OS; return a note for the report, or None.

    A reference training step allocates and frees gigabytes: the logits alone are batch x block
    x vocab floats = 16 x 256 x 24,000 x 4 B = 393 MB, and their gradient as much again. glibc
    hands blocks over 32 MB straight back to the kernel on free, so every step faults its memory
    back in page by page: we measured ~400,000 page faults and ~2 s of kernel time per step (on
    one thread) against ~7 s of compute on the 2-core reference machine. With mmap and trimming
    off, freed blocks stay in the process and later steps reuse them: no faults after the first
    few steps. The cost: the process keeps its peak memory, plus some fragmentation, until it
    exits: 4.7-5.4 GB instead of ~3.0 GB resident at the reference config, steady after ~5
    steps (measured over 25 steps with evals). That suits a dedicated training process.

    glibc (Linux) only; elsewhere this does nothing and returns None. Process-wide: call it in
    processes that train, not in libraries.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return None
    m_trim_threshold, m_mmap_max = -1, -4  # from <malloc.h>
    # mallopt returns 1 on success. M_MMAP_MAX 0: no mmap for big blocks; M_TRIM_THRESHOLD -1:
    # never trim the heap (both documented in `man mallopt`).
    if mallopt(m_mmap_max, 0) != 1 or mallopt(m_trim_threshold, -1) != 1:
        return None
    return "freed memory kept for reuse (glibc mallopt): no page faults after the first steps"


def rank_batch(
    draw: Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]],
    sampler: np.random.Generator,
    batch_size: int,
    dist: Dist,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's `batch_size` rows of one global batch of training windows, drawn by
    `draw(rows, sampler)`: every rank draws the same global batch (samplers seeded alike) and
    takes its own rows."""
    x, y = draw(batch_size * dist.world_size, sampler)
    mine = slice(dist.rank * batch_size, (dist.rank + 1) * batch_size)
    return to_device(x[mine], device), to_device(y[mine], device)
