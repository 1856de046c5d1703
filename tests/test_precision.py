"""Precision choices: which autocast dtype runs where, why the start-up report says so, and the
CPU probe that tells native bf16 from emulated."""

import logging
import platform
import time

import pytest
import torch
from torch.torch_version import TorchVersion

from jobgpt import precision
from jobgpt.errors import ConfigError
from jobgpt.precision import (
    BF16_MIN_SPEEDUP,
    CpuBf16,
    choose_dtype,
    cpu_bf16_flag,
    cpu_bf16_support,
    cpu_name,
    gpu_dtype,
    mps_dtype,
)

CPU = torch.device("cpu")
NATIVE = CpuBf16(flag="avx512_bf16", speedup=4.4)  # the AMD EPYC with avx512_bf16
EMULATED = CpuBf16(flag=None, speedup=0.01)  # an AVX2-only CPU: bf16 ~100x slower


# --- CPU: the measured bf16 support decides ---


def test_cpu_auto_picks_bf16_where_it_is_native_and_says_why() -> None:
    dtype, why = choose_dtype(CPU, "auto", cpu_bf16=NATIVE)
    assert dtype == torch.bfloat16
    assert "avx512_bf16" in why and "4.4x" in why


def test_cpu_auto_keeps_fp32_where_bf16_is_emulated() -> None:
    dtype, why = choose_dtype(CPU, "auto", cpu_bf16=EMULATED)
    assert dtype == torch.float32
    assert "no native bf16" in why and "0.01x" in why


def test_cpu_measurement_overrides_the_flag() -> None:
    # A flag that promises bf16 but a probe that finds it barely faster: fp32 is the safe bet.
    slow = CpuBf16(flag="avx512_bf16", speedup=BF16_MIN_SPEEDUP * 0.8)
    assert choose_dtype(CPU, "auto", cpu_bf16=slow)[0] == torch.float32
    # ...and an unflagged CPU (ARM/Apple reports differ) that measures fast gets bf16.
    fast = CpuBf16(flag=None, speedup=3.0)
    assert choose_dtype(CPU, "auto", cpu_bf16=fast)[0] == torch.bfloat16


@pytest.mark.parametrize("requested", ["float32", "fp32"])
def test_explicit_float32_wins_without_probing(requested: str, monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: pytest.fail("probed"))
    assert choose_dtype(CPU, requested) == (torch.float32, "--dtype float32 (no autocast)")


def test_explicit_bf16_on_a_slow_cpu_is_honoured_with_a_warning(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="jobgpt.precision"):
        dtype, why = choose_dtype(CPU, "bf16", cpu_bf16=EMULATED)
    assert dtype == torch.bfloat16 and why.startswith("--dtype bfloat16")
    assert "much slower" in caplog.text


def test_float16_on_cpu_is_refused_with_a_fix() -> None:
    with pytest.raises(ConfigError) as err:
        choose_dtype(CPU, "float16", cpu_bf16=NATIVE)
    assert "float16" in err.value.message and "--dtype auto" in err.value.hint


@pytest.mark.parametrize("bad", ["float64", "half", "int8", "", "BF16"])
def test_unknown_dtype_names_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        choose_dtype(CPU, bad, cpu_bf16=NATIVE)
    assert repr(bad) in err.value.message
    assert "auto, float32, bfloat16 or float16" in err.value.hint


# --- GPUs (pure decisions: no GPU needed) ---


def test_cuda_uses_bf16_on_ampere_and_scaled_fp16_before() -> None:
    assert gpu_dtype("auto", native_bf16=True, gpu="A100")[0] == torch.bfloat16
    dtype, why = gpu_dtype("auto", native_bf16=False, gpu="T4")
    assert dtype == torch.float16 and "GradScaler" in why
    assert "GradScaler" in gpu_dtype("float16", native_bf16=True, gpu="A100")[1]


def test_cuda_bf16_without_native_support_is_refused() -> None:
    with pytest.raises(ConfigError, match="T4"):
        gpu_dtype("bfloat16", native_bf16=False, gpu="T4")


def test_mps_defaults_to_fp32_and_checks_the_torch_version(monkeypatch) -> None:
    assert mps_dtype("auto")[0] == torch.float32
    monkeypatch.setattr(torch, "__version__", TorchVersion("2.5.1"))
    with pytest.raises(ConfigError, match="2.6"):
        mps_dtype("bfloat16")
    # Versions compare as numbers: 2.10 is newer than 2.8, not older as strings would say.
    monkeypatch.setattr(torch, "__version__", TorchVersion("2.10.0"))
    assert mps_dtype("float16")[0] == torch.float16


# --- the CPU probe ---


@pytest.mark.parametrize(
    ("cpuinfo", "flag"),
    [
        ("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n", "avx512_bf16"),
        ("flags\t\t: avx512_bf16 amx_bf16 amx_tile\n", "amx_bf16"),
        ("Features\t: fp asimd sve bf16 i8mm\n", "bf16"),  # ARM (Graviton3)
        ("flags\t\t: fpu sse avx avx2 fma f16c\n", None),  # AVX2 only: emulated bf16
        ("model name\t: mystery\n", None),
    ],
)
def test_cpu_bf16_flag_from_cpuinfo(cpuinfo: str, flag: str | None) -> None:
    assert cpu_bf16_flag(cpuinfo) == flag


def test_probe_is_quick_cached_and_leaves_threads_alone() -> None:
    cpu_bf16_support.cache_clear()
    threads = torch.get_num_threads()
    start = time.perf_counter()
    first = cpu_bf16_support()
    assert time.perf_counter() - start < 1.5
    assert torch.get_num_threads() == threads
    assert cpu_bf16_support() is first  # measured once per process
    assert first.speedup > 0
    if first.flag is None and platform.machine() in ("x86_64", "AMD64"):
        assert not first.fast  # x86 without bf16 instructions only emulates it: slow


def test_cpu_name_is_a_plain_string() -> None:
    name = cpu_name()
    assert isinstance(name, str) and "\n" not in name
