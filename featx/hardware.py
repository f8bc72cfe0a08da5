"""Devices, compute dtypes and a description of the machine for result stamps."""
from __future__ import annotations

import contextlib
import os
import platform
import sys
from contextlib import AbstractContextManager
from functools import cache

import torch

from featx.errors import FeatxError

_TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(spec: str = "auto") -> torch.device:
    """`auto` -> the first CUDA GPU when there is one, else the CPU; `cuda:k` is checked."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise FeatxError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:K") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FeatxError(f"device {spec} asked for, but torch sees no CUDA GPU here: use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FeatxError(f"device {spec} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    elif device.type != "cpu":
        raise FeatxError(f"device type {device.type!r} is not supported: use cpu or cuda")
    return device


CPUINFO = "/proc/cpuinfo"
SPEED_FLAGS = frozenset({"avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
                         "amx_int8"})
# Instructions that multiply int8 natively (VNNI dot products, AMX tiles). Without them OpenVINO's
# int8 ran slower than its fp32 (benchmarks/README.md, the AVX2-only EPYC).
INT8_DOT_FLAGS = frozenset({"avx_vnni", "avx512_vnni", "amx_int8"})


# oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA) and the speed flags each leaves out. oneDNN runs torch's
# bf16 matmuls and OpenVINO's CPU kernels, so under a cap the CPU is, for speed, the capped one.
_ABOVE_AVX2_VNNI = frozenset(f for f in SPEED_FLAGS if f.startswith(("avx512", "amx")))
_ABOVE_AVX2 = _ABOVE_AVX2_VNNI | {"avx_vnni"}
_ISA_CAPS: dict[str, frozenset[str]] = {
    "SSE41": _ABOVE_AVX2 | {"avx2"}, "AVX": _ABOVE_AVX2 | {"avx2"},
    "AVX2": _ABOVE_AVX2, "AVX2_VNNI": _ABOVE_AVX2_VNNI, "AVX2_VNNI_2": _ABOVE_AVX2_VNNI,
    "AVX512_CORE": frozenset({"avx_vnni", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}),
    "AVX512_CORE_VNNI": frozenset({"avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}),
    "AVX512_CORE_BF16": frozenset({"amx_tile", "amx_bf16", "amx_int8"}),
    "AVX512_CORE_FP16": frozenset({"amx_tile", "amx_bf16", "amx_int8"}),
    "AVX10_1_512": frozenset({"amx_tile", "amx_bf16", "amx_int8"}),
}


def isa_cap() -> str | None:
    """The ISA cap set for oneDNN in this process's environment (ONEDNN_MAX_CPU_ISA, or its older
    name DNNL_MAX_CPU_ISA), upper-cased; None when there is none."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return cap.strip().upper() if cap else None


@cache
def _present_flags() -> frozenset[str]:
    """The CPU's flags as /proc/cpuinfo lists them."""
    try:
        with open(CPUINFO) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _cpu_flags() -> frozenset[str]:
    """The CPU's flags, less those above the ISA cap (so `auto` picks fp32 on an AVX2-capped
    AVX512-BF16 CPU, where bf16 would run emulated, many times slower)."""
    return _present_flags() - _ISA_CAPS.get(isa_cap() or "ALL", frozenset())


def has_fast_bf16(device: torch.device) -> bool:
    """True where bf16 matmuls run natively: AMX or AVX512-BF16 CPUs, bf16-capable GPUs."""
    if device.type == "cuda":
        result: bool = torch.cuda.is_bf16_supported()
        return result
    return bool(_cpu_flags() & {"amx_bf16", "avx512_bf16"})


def has_int8_dot() -> bool:
    """True where the CPU multiplies int8 natively (VNNI or AMX), so an int8 model can outrun fp32."""
    return bool(_cpu_flags() & INT8_DOT_FLAGS)


def resolve_dtype(spec: str, device: torch.device) -> str:
    """`auto` -> bf16 where the hardware has fast bf16, else fp32; others pass through."""
    if spec == "auto":
        return "bf16" if has_fast_bf16(device) else "fp32"
    if spec == "int8":
        raise FeatxError("--dtype int8 is for text models on --backend openvino (featx extract): choose from auto, "
                         "fp32, bf16, fp16 here")
    if spec not in _TORCH_DTYPES:
        raise FeatxError(f"unknown dtype {spec!r}: choose from auto, fp32, bf16, fp16")
    return spec


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for `fp32`, `bf16` or `fp16`."""
    return _TORCH_DTYPES[name]


def compute_context(device: torch.device, dtype: str,
                    weights_dtype: torch.dtype = torch.float32) -> AbstractContextManager[object]:
    """Autocast to `dtype` while the weights are held in a wider one; otherwise nothing.

    Extraction, predictors and fine-tuning all enter their forward passes through here.
    """
    if dtype in ("fp32", "int8") or weights_dtype == torch_dtype(dtype):  # int8: OpenVINO's, nothing to autocast
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch_dtype(dtype))


def describe_hardware(device: torch.device) -> dict[str, object]:
    """Machine facts stamped on every store and benchmark result."""
    info: dict[str, object] = {
        "device": str(device),
        "cpu": _cpu_model(),
        # The instruction sets speed depends on: the CPU kind changes from machine to machine.
        "cpu_flags": sorted(_cpu_flags() & SPEED_FLAGS),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    cap = isa_cap()
    if cap:
        info["isa_cap"] = cap  # the flags above are then those the cap leaves; these, the CPU's:
        info["cpu_flags_uncapped"] = sorted(_present_flags() & SPEED_FLAGS)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_model() -> str:
    try:
        with open(CPUINFO) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# On a CPU, batches run on up to this many worker threads at once (see cpu_workers).
MAX_CPU_WORKERS = 4


def cpu_workers(threads: int | None = None) -> tuple[int, int]:
    """(workers, threads each) for CPU inference over `threads` cores (torch's count by default).

    Several batches at once, each on few threads, beat one batch on every thread: the
    small matmuls, GELU, LayerNorm and attention of a small encoder do not split well
    across cores (measured on 2 cores, two workers against one: +21 % rows/s on SST-2
    phrases, +6 % on IMDB reviews; benchmarks/README.md). Beyond MAX_CPU_WORKERS the
    workers get several threads each: untested on big machines, a bound on GIL traffic.
    """
    threads = threads or torch.get_num_threads()
    workers = max(1, min(threads, MAX_CPU_WORKERS))
    return workers, max(1, threads // workers)


def peak_memory_mb() -> float | None:
    """This process's peak resident memory (MB) since it started: Linux's VmHWM, which a new program
    starts afresh (getrusage's ru_maxrss carries the launching process's peak across exec, so a
    `featx train` started from a large process would report that one's); elsewhere getrusage.
    None where neither exists (Windows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    try:
        import resource
    except ImportError:  # Windows: no getrusage
        return None
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 1024 / 1024  # macOS counts bytes
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, 1)
