"""Where and how tensors run: devices, autocast, compilation, distribution's single-process
path, stop requests (Ctrl-C, SIGTERM, the time budget) and the process's memory behaviour."""

import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from jobgpt.errors import ConfigError
from jobgpt.runtime import (
    SAME_INTERRUPT_S,
    Dist,
    StopRequests,
    autocast_context,
    compile_choice,
    describe_device,
    init_distributed,
    is_out_of_memory,
    resolve_device,
    to_device,
)

CPU = torch.device("cpu")


# --- autocast ---


def test_autocast_context_on_cpu() -> None:
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast_context(CPU, torch.float32):
        assert (a @ b).dtype == torch.float32
    with autocast_context(CPU, torch.bfloat16):
        out = a @ b
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), a @ b, atol=0.1, rtol=0.05)
    assert (a @ b).dtype == torch.float32  # autocast ends with the block


# --- devices ---


def test_resolve_device_checks_explicit_choices() -> None:
    assert resolve_device("cpu") == CPU
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match="MPS is not available"):
            resolve_device("mps")


def test_describe_device_names_the_cpu_threads() -> None:
    threads = torch.get_num_threads()
    assert describe_device(CPU) == f"cpu ({threads} thread{'' if threads == 1 else 's'})"


def test_compile_is_on_for_cuda_only_unless_asked() -> None:
    assert compile_choice("auto", torch.device("cuda")) == (True, "auto: on for CUDA")
    use, why = compile_choice("auto", CPU)
    assert not use and why.startswith("auto: off on cpu") and "--compile on" in why
    assert compile_choice("on", CPU) == (True, "--compile on")
    assert compile_choice("off", torch.device("cuda")) == (False, "--compile off")


def test_to_device_copies_a_numpy_batch() -> None:
    batch = np.arange(6, dtype=np.int64).reshape(2, 3)
    tensor = to_device(batch, CPU)
    assert tensor.device == CPU and tensor.tolist() == batch.tolist()


def test_out_of_memory_is_recognised_on_every_device() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to ..."))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp] not enough memory"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


# --- distribution: one process ---


def test_alone_there_is_no_job_to_join_and_collectives_do_nothing(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    dist, device = init_distributed("cpu")
    assert dist == Dist(rank=0, world_size=1) and device == CPU
    assert dist.is_main and not dist.enabled
    model = torch.nn.Linear(2, 2)
    assert dist.wrap(model, CPU) is model
    tensor = torch.tensor([1.5, 2.0])
    assert dist.all_reduce(tensor, op="max") is tensor and tensor.tolist() == [1.5, 2.0]
    assert dist.gather({"rng": 1}) == [{"rng": 1}]
    dist.barrier()
    dist.leave()


def test_torchrun_on_apple_mps_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    with pytest.raises(ConfigError, match="not Apple MPS") as err:
        init_distributed("mps")
    assert "--device cpu" in err.value.hint


# --- stop requests ---


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_later_second_ctrl_c_quits_at_once_but_never_during_the_final_save() -> None:
    clock = FakeClock()
    requests = StopRequests(clock)
    requests.handle(signal.SIGINT)  # the first: stop after this step
    requests.handle(signal.SIGINT)  # its echo (uv, no terminal): ignored
    assert requests.signum == signal.SIGINT
    clock.now += SAME_INTERRUPT_S + 1  # a real second Ctrl-C, seconds later
    requests.saving = True
    requests.handle(signal.SIGINT)  # the checkpoint is being written: let it finish
    requests.handle(signal.SIGTERM)  # already stopping: nothing more to do
    requests.saving = False
    with pytest.raises(KeyboardInterrupt):
        requests.handle(signal.SIGINT)


def test_stop_requests_install_their_handlers_for_the_block_only() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopRequests() as requests:
        assert signal.getsignal(signal.SIGTERM) == requests.handle
        assert requests.after_step(Dist(), CPU, over_budget=False, progress=0.3) == (None, 0.3)
        assert requests.after_step(Dist(), CPU, True, 1.0, budget="budget used") == (
            "budget used",
            1.0,
        )
        requests.handle(signal.SIGTERM)
        assert requests.after_step(Dist(), CPU, True, 1.0)[0] == "stopped by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
    with requests:  # the same requests in a new block (the next fit) ask afresh
        assert requests.signum is None


# --- memory ---


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_keep_freed_memory_stops_page_faults_of_repeated_steps() -> None:
    # In a child process: the setting is process-wide and lasts until exit. A "step" allocates
    # tensors above glibc's 32 MB mmap threshold (like the logits), then frees them all.
    script = textwrap.dedent(
        """
        import resource, torch
        from jobgpt.runtime import keep_freed_memory

        def step_faults():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            tensors = [torch.empty(n).fill_(1.0) for n in (30_000_000, 12_000_000, 5_000_000)]
            del tensors
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

        plain = [step_faults() for _ in range(2)]
        note = keep_freed_memory()
        kept = [step_faults() for _ in range(8)]
        print(plain[-1], kept[-1], note is not None)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    plain, kept, applied = int(out[0]), int(out[1]), out[2] == "True"
    assert applied
    assert plain > 40_000  # 188 MB / 4 KiB pages, faulted in again every step
    assert kept < plain / 10  # the freed memory was reused
