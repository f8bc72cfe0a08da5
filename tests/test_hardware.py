"""What featx reads of the CPU: its speed flags, under an ISA cap the capped CPU's."""
from __future__ import annotations

import pytest
import torch

from featx import hardware

CPU = torch.device("cpu")
FLAGS = "fpu sse4_1 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8"


@pytest.fixture
def amx_cpu(fake_cpu):
    """An Intel CPU with AMX, as /proc/cpuinfo shows it."""
    return fake_cpu("Intel(R) Xeon(R) Test", FLAGS)


def test_the_flags_speed_depends_on_are_read_and_recorded(amx_cpu):
    info = hardware.describe_hardware(CPU)
    assert info["cpu"] == "Intel(R) Xeon(R) Test"
    assert info["cpu_flags"] == ["amx_bf16", "amx_int8", "amx_tile", "avx2", "avx512_bf16", "avx512_vnni", "avx512f"]
    assert "isa_cap" not in info and "cpu_flags_uncapped" not in info
    assert hardware.resolve_dtype("auto", CPU) == "bf16"


@pytest.mark.parametrize("variable", ["ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"])
def test_an_avx2_cap_makes_the_cpu_an_avx2_one(amx_cpu, variable):
    # Under the cap oneDNN cannot use bf16 instructions: autocast to bf16 would run emulated.
    amx_cpu.setenv(variable, "avx2")
    info = hardware.describe_hardware(CPU)
    assert info["cpu_flags"] == ["avx2"]
    assert info["isa_cap"] == "AVX2"
    assert info["cpu_flags_uncapped"] == ["amx_bf16", "amx_int8", "amx_tile", "avx2", "avx512_bf16", "avx512_vnni",
                                          "avx512f"]  # the machine the emulation ran on
    assert hardware.resolve_dtype("auto", CPU) == "fp32"


@pytest.mark.parametrize("cap, fast_bf16, flags", [
    ("AVX512_CORE_VNNI", False, ["avx2", "avx512_vnni", "avx512f"]),
    ("AVX512_CORE_BF16", True, ["avx2", "avx512_bf16", "avx512_vnni", "avx512f"]),
    ("ALL", True, ["amx_bf16", "amx_int8", "amx_tile", "avx2", "avx512_bf16", "avx512_vnni", "avx512f"]),
])
def test_each_cap_leaves_the_flags_below_it(amx_cpu, cap, fast_bf16, flags):
    amx_cpu.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert hardware.describe_hardware(CPU)["cpu_flags"] == flags
    assert hardware.has_fast_bf16(CPU) is fast_bf16


@pytest.mark.parametrize("flags, cap, int8_dot", [
    (FLAGS, None, True),
    ("fpu avx avx2 fma", None, False),  # the AVX2-only EPYC, where OpenVINO's int8 ran slower than fp32
    ("fpu avx avx2 fma avx_vnni", None, True),  # AVX-VNNI without AVX-512 (Alder Lake)
    ("fpu avx avx2 fma avx_vnni", "AVX2", False),
    ("fpu avx avx2 fma avx_vnni", "AVX2_VNNI", True),
    (FLAGS, "AVX512_CORE", False),
    (FLAGS, "AVX512_CORE_VNNI", True),
])
def test_int8_dot_products_are_read_from_the_flags_under_the_cap(fake_cpu, flags, cap, int8_dot):
    patch = fake_cpu("Test CPU", flags)
    if cap:
        patch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert hardware.has_int8_dot() is int8_dot


def test_the_peak_memory_is_the_programs_own_not_its_launchers():
    """getrusage's ru_maxrss carries the launching process's peak across exec: a `featx train` started
    from a process holding 400 MB more reported 400 MB more. VmHWM starts afresh."""
    import subprocess
    import sys

    import numpy as np

    def child() -> float:
        return float(subprocess.run([sys.executable, "-c", "from featx.hardware import peak_memory_mb; "
                                     "print(peak_memory_mb())"], capture_output=True, text=True, check=True).stdout)

    alone = child()
    ballast = np.ones(50_000_000)  # 400 MB, resident
    assert ballast.sum() > 0 and child() < alone + 100
